{#- Names of the engineered feature columns of `relation` (every column but customer_id),
    read from the warehouse at run time so downstream models follow customer_features
    without edits. Empty at parse time, when there is no database to ask. -#}
{% macro feature_columns(relation) %}
    {%- set names = [] -%}
    {%- if execute -%}
        {%- for column in adapter.get_columns_in_relation(relation) -%}
            {%- if column.name != 'customer_id' -%}
                {%- do names.append(column.name) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(names) }}
{% endmacro %}
