{#- Every row of the raw-file source `relation` plus `source_row_number`: the row's
    1-based position in the file, header excluded. Deduplication keeps the first valid
    occurrence by this number, so it must be the file's order, never the order in which
    a parallel scan happens to deliver rows. How to read a file position is the engine's
    business, hence dispatched; DuckDB and Spark are implemented. -#}
{% macro with_source_row_number(relation) -%}
    {{ return(adapter.dispatch('with_source_row_number', 'segmentation')(relation)) }}
{%- endmacro %}

{% macro default__with_source_row_number(relation) -%}
    {{ exceptions.raise_compiler_error(
        "with_source_row_number: no implementation for adapter '" ~ adapter.type()
        ~ "': staging needs each raw row's position in the file to deduplicate"
    ) }}
{%- endmacro %}

{% macro duckdb__with_source_row_number(relation) -%}
    {#- `relation` renders as the reader of models/staging/__sources.yml. -#}
    {%- if (relation.external or '').startswith('read_parquet(') -%}
        {#- The Parquet reader's own row index in the file (0-based), exact under
            DuckDB's parallel row-group scan. -#}
        select
            * exclude (file_row_number),
            file_row_number + 1 as source_row_number
        from {{ relation }}
    {%- else -%}
        {#- DuckDB's CSV reader has no file row number ("The file_row_number option is
            not supported by this reader", DuckDB 2.0). WITH ORDINALITY numbers the rows
            of the reader itself, in the order it returns them, rather than a derived
            table whose order SQL leaves undefined; DuckDB plans it as a fixed-order
            streaming window, which scans the file on one thread from its first byte,
            so the ordinal is the line's position (tests/test_dbt_build.py checks it on a
            file large enough to be read in parallel chunks otherwise). -#}
        select * rename (ordinality as source_row_number)
        from {{ relation }} with ordinality
    {%- endif -%}
{%- endmacro %}

{#- The statement at `step` (0: drop, 1: write) of base_customers' pre_hook: on Spark,
    the raw rows with each one's scan position, written once (see below); none (an
    empty hook, which dbt skips) elsewhere. -#}
{% macro source_scan_hook(relation, step) -%}
    {{ return(adapter.dispatch('source_scan_hook', 'segmentation')(relation, step)) }}
{%- endmacro %}

{% macro default__source_scan_hook(relation, step) -%}
{%- endmacro %}

{% macro spark__source_scan_hook(relation, step) -%}
    {%- set scanned = source_scan_relation(relation) -%}
    {%- if raw_is_parquet() -%}
        {#- Parquet: the reader's own row index, nothing to write -#}
    {%- elif step == 0 -%}
        drop table if exists {{ scanned }}
    {%- else -%}
        create table {{ scanned }} using parquet as
        select *, monotonically_increasing_id() as scan_position from {{ relation }}
    {%- endif -%}
{%- endmacro %}

{% macro source_scan_relation(relation) -%}
    {{ return(api.Relation.create(
        schema=relation.schema, identifier=relation.identifier ~ '__scan'
    )) }}
{%- endmacro %}

{% macro spark__with_source_row_number(relation) -%}
    {%- if raw_is_parquet() -%}
        {#- Parquet: the reader's row index in the file (0-based), exact under any split,
            and deterministic, so Spark may read it as often as the model does. -#}
        select
            *,
            _metadata.row_index + 1 as source_row_number
        from {{ relation }}
    {%- else -%}
        {{ spark__csv_source_row_number(relation) }}
    {%- endif -%}
{%- endmacro %}

{% macro spark__csv_source_row_number(relation) -%}
    {#- CSV: Spark scans a file in splits, one task each, in file order; within a task, rows
        come in file order. monotonically_increasing_id() packs (task << 33) + the row's
        index in the task, so a row's position is the rows of the earlier tasks (one
        aggregate over a few tasks) plus its index. The id is computed once, by the scan
        that writes `<source>__scan` (source_scan_hook, base_customers' pre_hook):
        computed here, Spark would scan and shuffle every row once for each of the four
        places this CTE is read, since a nondeterministic expression cannot be repeated
        (5x slower at 10M rows). -#}
    {%- set scanned = source_scan_relation(relation) %}
    with

    task_sizes as (
        select
            shiftright(scan_position, 33) as scan_task,
            count(*) as task_rows
        from {{ scanned }}
        group by shiftright(scan_position, 33)
    ),

    task_starts as (
        select
            scan_task,
            sum(task_rows) over (order by scan_task) - task_rows as rows_before
        from task_sizes
    )

    select
        scanned.*,
        task_starts.rows_before + (scanned.scan_position & 8589934591) + 1
            as source_row_number
    from {{ scanned }} as scanned
    inner join task_starts on shiftright(scanned.scan_position, 33) = task_starts.scan_task
{%- endmacro %}
