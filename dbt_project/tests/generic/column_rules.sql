{#- Many row-level rules of one model in one scan: one row per failing (rule, row), so
    dbt's failure count is the sum of what one not_null or accepted_range test per
    column would have counted, and each failure names its column and rule.

    `columns` maps a column to its rules: `not_null: true` (the column is never NULL)
    and/or `min_value` / `max_value` (accepted_range: NULLs pass, NaN and infinity fail,
    as in tests/generic/accepted_range.sql). `key` names the column that identifies a
    failing row in the output.

    Why one test rather than one per column: each test is a dbt node that scans the model
    again, and about a hundred of them took a third of a 10M-row build. Here the rules,
    joined by OR, select the failing rows in one pass (valid rows cost one predicate);
    only those rows are attributed to their rules. Failures are stored
    (`store_failures`): `select column_name, rule, count(*) from <the stored failures>
    group by all` gives the count each former test reported. -#}
{% test column_rules(model, columns, key) %}
{{ config(store_failures=true) }}
{%- set rules = [] -%}
{%- for column, spec in columns.items() -%}
    {%- if spec.get('not_null') -%}
        {%- do rules.append({
            'column': column, 'rule': 'not_null', 'expected': 'not null',
            'fails': column ~ ' is null',
        }) -%}
    {%- endif -%}
    {%- set outside = [] -%}
    {%- if spec.get('min_value') is not none -%}
        {%- do outside.append(column ~ ' < ' ~ spec.min_value) -%}
    {%- endif -%}
    {%- if spec.get('max_value') is not none -%}
        {%- do outside.append('not (' ~ column ~ ' <= ' ~ spec.max_value ~ ')') -%}
    {%- endif -%}
    {%- if outside -%}
        {%- do rules.append({
            'column': column, 'rule': 'accepted_range',
            'expected': 'from ' ~ spec.get('min_value', '-inf') ~ ' to '
                ~ spec.get('max_value', 'inf'),
            'fails': column ~ ' is not null and (' ~ (outside | join(' or ')) ~ ')',
        }) -%}
    {%- endif -%}
{%- endfor -%}
{%- if not rules -%}
    {{ exceptions.raise_compiler_error("column_rules on " ~ model ~ ": no rules given") }}
{%- endif %}

with

failing_rows as (

    select *
    from {{ model }}
    where
        {% for rule in rules %}
            ({{ rule.fails }}){% if not loop.last %} or{% endif %}
        {% endfor %}

)

{% for rule in rules %}
select
    {{ key }} as row_key,
    '{{ rule.column }}' as column_name,
    '{{ rule.rule }}' as rule,
    '{{ rule.expected }}' as expected
from failing_rows
where {{ rule.fails }}
{% if not loop.last %}union all{% endif %}
{% endfor %}

{% endtest %}
