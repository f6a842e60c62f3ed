-- TPC-H Q6: Forecasting Revenue Change
-- deviation: the discount bounds DISCOUNT-0.01 / DISCOUNT+0.01 are written pre-computed (0.05 / 0.07) because engines that type unsuffixed decimal literals as float (DataFusion by default) evaluate 0.06 + 0.01 to 0.06999999999999999 and could drop l_discount = 0.07 rows.
select
    sum(l_extendedprice * l_discount) as revenue
from
    lineitem
where
    l_shipdate >= date '1994-01-01'
    and l_shipdate < date '1994-01-01' + interval '1' year
    and l_discount between 0.05 and 0.07
    and l_quantity < 24;
