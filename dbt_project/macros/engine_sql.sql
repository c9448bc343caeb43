{#- Where DuckDB's and Spark's SQL differ, one macro each, dispatched on the adapter, so
    every model exists once (dbt's cross-database macros cover the types: type_string).
    The Spark forms give the same rows under ANSI mode as without it. -#}

{#- A column name quoted for the engine ("x" on DuckDB, `x` on Spark). -#}
{% macro quoted(name) -%}
    {{ return(adapter.quote(name)) }}
{%- endmacro %}

{#- The engine's text type (dbt's cross-database type_string: VARCHAR, STRING). -#}
{% macro text_type() -%}
    {{ return(dbt.type_string()) }}
{%- endmacro %}

{#- `expression` read as a double, NULL when it is not a number, by DuckDB's grammar:
    surrounding whitespace, a sign, digits with single underscores between them, an
    optional fraction and exponent, or inf/infinity/nan in any case. -#}
{% macro numeric_reading(expression) -%}
    {{ return(adapter.dispatch('numeric_reading', 'segmentation')(expression)) }}
{%- endmacro %}

{% macro default__numeric_reading(expression) -%}
    try_cast({{ expression }} as double)
{%- endmacro %}

{% macro spark__numeric_reading(expression) -%}
    {#- Spark's cast alone would also read `1.5d` and `1.5f` (Java literals) and text
        padded with control characters, and would not read `1_000`: the text must match
        DuckDB's grammar first. A column the file already types (Parquet) is cast as it
        is; typeof() is constant per column, so Spark keeps only one branch. -#}
    case
        when typeof({{ expression }}) <> 'string' then try_cast({{ expression }} as double)
        when
            {{ expression }} rlike
            '^\\s*[+-]?(([0-9]+(_[0-9]+)*([.]([0-9]+(_[0-9]+)*)?)?|[.][0-9]+(_[0-9]+)*)([eE][+-]?[0-9]+(_[0-9]+)*)?|(?i:inf|infinity|nan))\\s*$'
            then try_cast(replace(cast({{ expression }} as string), '_', '') as double)
    end
{%- endmacro %}

{#- True for a double that is neither NaN nor infinite. -#}
{% macro is_finite(expression) -%}
    {{ return(adapter.dispatch('is_finite', 'segmentation')(expression)) }}
{%- endmacro %}

{% macro default__is_finite(expression) -%}
    isfinite({{ expression }})
{%- endmacro %}

{% macro spark__is_finite(expression) -%}
    not (isnan({{ expression }}) or abs({{ expression }}) = cast('Infinity' as double))
{%- endmacro %}

{#- True for a finite double with no fractional part. -#}
{% macro is_whole_number(expression) -%}
    {{ return(adapter.dispatch('is_whole_number', 'segmentation')(expression)) }}
{%- endmacro %}

{% macro default__is_whole_number(expression) -%}
    {{ expression }} = floor({{ expression }})
{%- endmacro %}

{% macro spark__is_whole_number(expression) -%}
    {#- Spark's floor() of a double is a bigint, which saturates above 9.2e18: 1e20
        would not be whole there. The remainder is exact for any double. -#}
    {{ expression }} % 1 = 0
{%- endmacro %}

{#- An array of `expressions` (a list of SQL texts) and its item at 1-based `position`. -#}
{% macro array_of(expressions) -%}
    {{ return(adapter.dispatch('array_of', 'segmentation')(expressions)) }}
{%- endmacro %}

{% macro default__array_of(expressions) -%}
    [{{ expressions | join(', ') }}]
{%- endmacro %}

{% macro spark__array_of(expressions) -%}
    array({{ expressions | join(', ') }})
{%- endmacro %}

{% macro array_item(array, position) -%}
    {{ return(adapter.dispatch('array_item', 'segmentation')(array, position)) }}
{%- endmacro %}

{% macro default__array_item(array, position) -%}
    {{ array }}[{{ position }}]
{%- endmacro %}

{% macro spark__array_item(array, position) -%}
    {#- Spark's [] is 0-based; element_at is 1-based (and NULL-safe on a NULL array). -#}
    element_at({{ array }}, {{ position }})
{%- endmacro %}

{#- `as not materialized` on DuckDB (see base_customers.sql for why), `as` elsewhere:
    Spark inlines every CTE anyway. -#}
{% macro cte_not_materialized() -%}
    {{ return(adapter.dispatch('cte_not_materialized', 'segmentation')()) }}
{%- endmacro %}

{% macro default__cte_not_materialized() -%}
    as
{%- endmacro %}

{% macro duckdb__cte_not_materialized() -%}
    as not materialized
{%- endmacro %}
