{#- Every rejected raw row: its position in the file, the raw values as text, and the
    reason naming each failed field and rule. Nothing is dropped silently. -#}
{%- set fields = customer_fields() -%}
{%- set id = customer_id_columns() %}

with

validated as (

    select * from {{ ref('base_customers') }}

),

rejected as (

    select
        source_row_number,
        {{ id.name }},
        -- base_customers keeps a rejected row's raw text as one list, in field order.
        {% for field in fields %}
            {{ array_item('raw_texts', loop.index) }} as {{ field.name }},
        {% endfor %}
        rejection_reason
    from validated
    where rejection_reason is not null

)

select * from rejected
