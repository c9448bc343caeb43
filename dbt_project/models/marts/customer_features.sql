{#- Engineered features, one row per staged customer.

    A PURE row-level projection: the export compiles this SELECT into ONNX operators, so
    serving computes the same numbers without SQL. Allowed: arithmetic, numeric literals,
    CAST, NULLIF, COALESCE, LN/LOG10/EXP/SQRT/ABS/POWER, GREATEST/LEAST, CASE WHEN with
    comparisons and AND/OR/NOT, IS [NOT] NULL. No joins, windows, aggregates, filters,
    DISTINCT or LIMIT.

    Guards: every division has a denominator that cannot be 0 (a CASE, or GREATEST with
    a floor); GREATEST/LEAST only ever see non-NULL operands because DuckDB's GREATEST
    ignores NULL; a feature is NULL only when its input is missing (credit_limit,
    minimum_payments), which the model imputes. -#}
{%- set fields = customer_fields() -%}
{%- set id = customer_id_columns() %}

with

customers as (

    select
        {{ id.name }},
        {% for field in fields %}
            {{ field.name }}{% if not loop.last %},{% endif %}
        {% endfor %}
    from {{ ref('stg_customers') }}

),

features as (

    select
        {{ id.name }},

        -- Spending and borrowing against the limit. A limit under 1 is floored at 1
        -- (no division by 0); capped at 5 because beyond five times the limit the
        -- balance is an account anomaly, not more behaviour (real data: 99.9% <= 1.33).
        case
            when credit_limit is null then null
            else least(balance / greatest(credit_limit, 1.0), 5.0)
        end as credit_utilization_ratio,

        -- Purchase behaviour per month of tenure (tenure >= 1 by the staging contract;
        -- the floor keeps the division safe on any input).
        cast(purchases_trx as double)
        / greatest(cast(tenure as double), 1.0) as purchases_per_month,
        case
            when purchases_trx > 0 then purchases / cast(purchases_trx as double)
            else 0.0
        end as average_ticket,
        -- Shares of the two purchase kinds in their sum (not in `purchases`, which does
        -- not always equal the sum in real data), so both stay within [0, 1].
        case
            when oneoff_purchases + installments_purchases > 0
                then oneoff_purchases / (oneoff_purchases + installments_purchases)
            else 0.0
        end as oneoff_purchase_share,
        case
            when oneoff_purchases + installments_purchases > 0
                then installments_purchases / (oneoff_purchases + installments_purchases)
            else 0.0
        end as installment_purchase_share,

        -- Reliance on cash advances rather than purchases.
        case
            when cash_advance + purchases > 0 then cash_advance / (cash_advance + purchases)
            else 0.0
        end as cash_advance_ratio,
        cast(cash_advance_trx as double)
        / greatest(cast(tenure as double), 1.0) as cash_advance_intensity,

        -- Repayment discipline. A minimum payment under 1 is floored at 1, and the ratio
        -- capped at 100: above that it measures a tiny minimum, not the customer
        -- (real data: 99% <= 50, max 6,841 on a minimum of 0.02).
        case
            when minimum_payments is null then null
            else least(payments / greatest(minimum_payments, 1.0), 100.0)
        end as payment_to_minimum_ratio,
        prc_full_payment as full_payment_share,
        case
            when minimum_payments is null then null
            else
                0.5 * least(payments / greatest(minimum_payments, 1.0), 1.0)
                + 0.5 * prc_full_payment
        end as payment_consistency_index,

        -- Monetary columns are zero-inflated and right-skewed: ln(1 + x) keeps 0 at 0.
        ln(1.0 + balance) as log_balance,
        ln(1.0 + purchases) as log_purchases,
        ln(1.0 + oneoff_purchases) as log_oneoff_purchases,
        ln(1.0 + installments_purchases) as log_installments_purchases,
        ln(1.0 + cash_advance) as log_cash_advance,
        ln(1.0 + credit_limit) as log_credit_limit,
        ln(1.0 + payments) as log_payments,
        ln(1.0 + minimum_payments) as log_minimum_payments,

        -- Activity frequencies, already on [0, 1] (cash advance up to 2, see staging).
        balance_frequency,
        purchases_frequency,
        oneoff_purchases_frequency,
        purchases_installments_frequency,
        cash_advance_frequency,
        cast(tenure as double) as tenure

    from customers

)

select * from features
