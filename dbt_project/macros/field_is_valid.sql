{#- True when the raw field passes every rule of field_rejection(), so that macro's
    reason is NULL; false (never NULL) otherwise. The common case in one cheap predicate:
    staging builds the reasons only for the rows it fails. `between` is false for NULL,
    NaN (DuckDB orders NaN above every number) and both infinities, so those rows fall
    through to field_rejection(), which also accepts a missing value of a nullable field
    written as blank text. -#}
{% macro field_is_valid(field, raw_column, value_column) -%}
    coalesce(
        {{ value_column }} between {{ field.minimum }} and {{ field.maximum }}
        {%- if field.is_integer %}
            and {{ is_whole_number(value_column) }}
        {%- endif %}
        {%- if field.nullable %}
            or {{ raw_column }} is null
        {%- endif %},
        false
    )
{%- endmacro %}
