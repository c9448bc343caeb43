{#- The rejection reason for one raw field, or NULL when the value is valid.
    `field` is one entry of customer_fields(); `raw_column` holds the raw value (text
    for CSV, typed for Parquet) and `value_column` its numeric reading (NULL when not a
    number). Reasons name the field and the rule, never the value: `balance: minimum 0`.
    Blank text counts as missing. -#}
{% macro field_rejection(field, raw_column, value_column) -%}
    case
        -- Cheapest first: most rows are valid numbers and skip the text checks.
        when {{ value_column }} is null
            and ({{ raw_column }} is null or trim(cast({{ raw_column }} as {{ text_type() }})) = '')
            then {% if field.nullable %}null{% else %}'{{ field.name }}: missing'{% endif %}
        -- NaN and infinity parse as numbers but are no amount, count or frequency.
        when {{ value_column }} is null or not {{ is_finite(value_column) }}
            then '{{ field.name }}: not a number'
        {%- if field.is_integer %}
        when not {{ is_whole_number(value_column) }}
            then '{{ field.name }}: not an integer'
        {%- endif %}
        when {{ value_column }} < {{ field.minimum }}
            then '{{ field.name }}: minimum {{ field.minimum_text }}'
        when {{ value_column }} > {{ field.maximum }}
            then '{{ field.name }}: maximum {{ field.maximum_text }}'
    end
{%- endmacro %}
