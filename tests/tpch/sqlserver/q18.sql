-- q18 as sent to SQL Server, one statement per line
SELECT "customer"."c_custkey", "customer"."c_name", "orders"."o_orderkey", "orders"."o_totalprice", "orders"."o_orderdate", "lineitem"."l_quantity" FROM "customer" AS "customer" INNER JOIN "orders" AS "orders" ON "customer"."c_custkey" = "orders"."o_custkey" INNER JOIN "lineitem" AS "lineitem" ON "orders"."o_orderkey" = "lineitem"."l_orderkey"
SELECT * FROM (SELECT "lineitem"."l_orderkey" FROM "lineitem" AS "lineitem" GROUP BY "lineitem"."l_orderkey" HAVING (sum("lineitem"."l_quantity") > 300.00)) AS "__correlated_sq_1"
