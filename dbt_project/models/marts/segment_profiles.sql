{#- One row per segment of the model version that scored customer_segments: size,
    share, distances and the mean of every engineered feature (avg_<feature>), for
    analysts. The features come from the generated macro feature_names()
    (customer_features.yml), so the columns are known at parse time and
    segment_profiles.yml declares every one under an enforced contract. -#}
{%- set feature_columns = feature_names() %}

with

segments as (

    select * from {{ ref('customer_segments') }}

),

features as (

    select * from {{ ref('customer_features') }}

),

scored_features as (

    select
        segments.model_version,
        segments.segment_id,
        segments.segment_name,
        segments.distance,
        {%- for name in feature_columns %}
            features.{{ name }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from segments
    inner join features on segments.customer_id = features.customer_id

),

profiles as (

    select
        model_version,
        segment_id,
        segment_name,
        count(*) as customer_count,
        count(*) / sum(count(*)) over (partition by model_version) as customer_share,
        avg(distance) as avg_distance,
        max(distance) as max_distance,
        {%- for name in feature_columns %}
            avg({{ name }}) as avg_{{ name }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from scored_features
    group by model_version, segment_id, segment_name

)

select * from profiles
order by segment_id
