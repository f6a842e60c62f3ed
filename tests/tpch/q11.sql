-- TPC-H Q11: Important Stock Identification
-- deviation: FRACTION = 0.0001 is the validation value for SF = 1 (the spec scales it as 0.0001 / SF).
-- deviation: added ps_partkey as a final ORDER BY key so that equal values are ordered deterministically.
select
    ps_partkey,
    sum(ps_supplycost * ps_availqty) as value
from
    partsupp,
    supplier,
    nation
where
    ps_suppkey = s_suppkey
    and s_nationkey = n_nationkey
    and n_name = 'GERMANY'
group by
    ps_partkey
having
    sum(ps_supplycost * ps_availqty) > (
        select
            sum(ps_supplycost * ps_availqty) * 0.0001
        from
            partsupp,
            supplier,
            nation
        where
            ps_suppkey = s_suppkey
            and s_nationkey = n_nationkey
            and n_name = 'GERMANY'
    )
order by
    value desc,
    ps_partkey;
