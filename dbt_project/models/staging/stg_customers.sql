{#- Valid customers with their staged names and explicit types (segmentation.schema). -#}
{%- set fields = customer_fields() -%}
{%- set id = customer_id_columns() %}

with

validated as (

    select * from {{ ref('base_customers') }}

),

valid as (

    select
        {{ id.name }},
        {% for field in fields %}
            cast({{ field.name }}__value as {{ field.sql_type }})
                as {{ field.name }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from validated
    where rejection_reason is null

)

select * from valid
