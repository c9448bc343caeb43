{#- Reads the raw file once and flags every row: cast, validate, deduplicate.
    A table, not a view: the raw file is parsed once per build instead of once per
    downstream model and test. DuckDB's cost of writing a table grows with its columns
    (about 0.35 s of CPU per column of 10M rows, even a column of NULLs), so the raw
    text, needed only as the evidence of rejected rows, is one list column that is NULL
    for valid rows, rather than one text column per field. -#}
{{ config(
    materialized='table',
    pre_hook=[
        "{{ source_scan_hook(source('raw', 'customers'), 0) }}",
        "{{ source_scan_hook(source('raw', 'customers'), 1) }}",
    ],
) }}
{%- set fields = customer_fields() -%}
{%- set id = customer_id_columns() -%}
{%- set raw_texts = [] -%}
{%- for field in fields -%}
    {%- do raw_texts.append('cast(' ~ field.name ~ '__raw as ' ~ text_type() ~ ')') -%}
{%- endfor %}

with

-- Not materialized (DuckDB): repeated_ids reads these CTEs a second time, and recomputing them
-- (one more scan of the file, the cheap validity predicate) takes half the time of
-- buffering every column of every row (DuckDB's default for a CTE read twice), in both
-- Parquet and CSV at 10M rows, because that buffer is a pipeline breaker.
numbered {{ cte_not_materialized() }} (

    -- Each row's position in the file: duplicates are resolved by it, so it is read
    -- from the file (see the macro), not left to the order of a scan.
    {{ with_source_row_number(source('raw', 'customers')) }}

),

converted {{ cte_not_materialized() }} (

    -- CSV columns are text; Parquet columns may already be typed: numeric_reading reads both.
    select
        source_row_number,
        nullif(trim(cast({{ quoted(id.raw_name) }} as {{ text_type() }})), '')
            as {{ id.name }},
        {% for field in fields %}
            {{ quoted(field.raw_name) }} as {{ field.name }}__raw,
            {{ numeric_reading(quoted(field.raw_name)) }}
                as {{ field.name }}__value{% if not loop.last %},{% endif %}
        {% endfor %}
    from numbered

),

checked {{ cte_not_materialized() }} (

    -- Every reason of a row, or NULL: one predicate passes the valid rows, and only the
    -- others pay for the reasons (7.1 s of CPU down to 3.0 at 10M rows).
    select
        *,
        case
            when
                {{ id.name }} is not null
                {% for field in fields %}
                    and {{ field_is_valid(field, field.name ~ '__raw', field.name ~ '__value') }}
                {% endfor %}
                then null
            else nullif(concat_ws(
                '; ',
                case when {{ id.name }} is null then '{{ id.name }}: missing' end,
                {% for field in fields %}
                    {{ field_rejection(field, field.name ~ '__raw', field.name ~ '__value') }}
                    {%- if not loop.last %},{% endif %}
                {% endfor %}
            ), '')
        end as field_rejections
    from converted

),

repeated_ids as (

    -- Ids shared by valid rows, and the first of those rows in file order: valid rows
    -- are kept before rejected ones (a corrected re-send of a rejected row is kept), so
    -- only later valid copies are duplicates. An aggregate over the ids, not a window
    -- over every column of every row (the window was half of this model at 10M).
    select
        {{ id.name }},
        min(source_row_number) as first_valid_row_number
    from checked
    where field_rejections is null
    group by {{ id.name }}
    having count(*) > 1

),

flagged as (

    select
        checked.*,
        case
            when checked.field_rejections is not null then checked.field_rejections
            when checked.source_row_number > repeated_ids.first_valid_row_number
                then '{{ id.name }}: duplicate'
        end as rejection_reason
    from checked
    left join repeated_ids on checked.{{ id.name }} = repeated_ids.{{ id.name }}

),

final as (

    select
        source_row_number,
        {{ id.name }},
        rejection_reason,
        -- The raw text of a rejected row, in the order of customer_fields().
        case
            when rejection_reason is not null
                then {{ array_of(raw_texts) }}
        end as raw_texts,
        {% for field in fields %}
            {{ field.name }}__value{% if not loop.last %},{% endif %}
        {% endfor %}
    from flagged

)

-- Not sorted back into file order: a 1M-row sort costs about 20% of the build, and
-- consumers order by customer_id (or source_row_number) themselves.
select * from final
