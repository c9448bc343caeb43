{#- Rows whose column lies outside [min_value, max_value] (either bound optional).
    NULLs pass: nullability is the not_null test's job. NaN and infinity fail: DuckDB
    orders NaN above every number, and `not (x <= max)` is true for both. -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none) %}
{%- set outside = ['false'] -%}
{%- if min_value is not none -%}
{%- do outside.append(column_name ~ ' < ' ~ min_value) -%}
{%- endif -%}
{%- if max_value is not none -%}
{%- do outside.append('not (' ~ column_name ~ ' <= ' ~ max_value ~ ')') -%}
{%- endif %}

select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null and ({{ outside | join(' or ') }})

{% endtest %}
