{#- One row per segment of the current model: size, share, distance and the mean of
    every engineered feature (avg_<feature>), for analysts. Feature columns follow
    customer_features, so a new feature appears here without editing this model. -#}
{%- set feature_columns = feature_columns(ref('customer_features')) %}

with

segments as (

    select * from {{ ref('customer_segments') }}

),

features as (

    select * from {{ ref('customer_features') }}

),

scored_features as (

    select
        features.*,
        segments.model_version,
        segments.segment_id,
        segments.segment_name,
        segments.distance
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
        {%- for name in feature_columns %}
            avg({{ name }}) as avg_{{ name }},
        {%- endfor %}
        max(distance) as max_distance
    from scored_features
    group by model_version, segment_id, segment_name

)

select * from profiles
order by segment_id
