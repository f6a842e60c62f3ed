-- TPC-H Q13: Customer Distribution
-- deviation: the derived-table column alias list "as c_orders (c_custkey, c_count)" is replaced by aliasing count(o_orderkey) as c_count inside the subquery (MariaDB rejects derived-table column lists).
select
    c_count,
    count(*) as custdist
from
    (
        select
            c_custkey,
            count(o_orderkey) as c_count
        from
            customer
            left outer join orders on
                c_custkey = o_custkey
                and o_comment not like '%special%requests%'
        group by
            c_custkey
    ) as c_orders
group by
    c_count
order by
    custdist desc,
    c_count desc;
