{#- The raw file as the source `raw.customers`. DuckDB reads the file in place (the
    reader in models/staging/__sources.yml). Spark reads it through an external table
    over the file, (re)declared before every run (dbt_project.yml's on-run-start) so it
    always names the file of this run's `segmentation_data` var: CSV with every column as
    text (as DuckDB's all_varchar), Parquet as typed. Dropping it never deletes the file. -#}
{% macro declare_raw_source() -%}
    {{ return(adapter.dispatch('declare_raw_source', 'segmentation')()) }}
{%- endmacro %}

{% macro default__declare_raw_source() -%}
    {#- nothing to declare: the source is the file reader itself -#}
{%- endmacro %}

{#- The raw file's path (the `segmentation_data` var) and whether it is Parquet. -#}
{% macro raw_data_path() -%}
    {{ return(var('segmentation_data', env_var('SEGMENTATION_DATA', '../var/data/customers.csv'))) }}
{%- endmacro %}

{% macro raw_is_parquet() -%}
    {{ return(raw_data_path().lower().endswith(('.parquet', '.pq'))) }}
{%- endmacro %}

{% macro spark__declare_raw_source() -%}
    {%- set path = raw_data_path() -%}
    {%- set relation = source('raw', 'customers') -%}
    {%- set path = path | replace('\\', '\\\\') | replace("'", "\\'") -%}
    {% call statement('raw_schema') %}create database if not exists {{ relation.schema }}{% endcall %}
    {% call statement('raw_drop') %}drop table if exists {{ relation }}{% endcall %}
    {% call statement('raw_table') %}
        create table {{ relation }}
        {% if raw_is_parquet() -%}
        using parquet options (path '{{ path }}')
        {%- else -%}
        {#- Empty fields are NULL, as in DuckDB; quotes and escapes as RFC 4180. #}
        using csv options (
            path '{{ path }}', header 'true', inferSchema 'false', escape '"',
            mode 'PERMISSIVE'
        )
        {%- endif %}
    {% endcall %}
{%- endmacro %}
