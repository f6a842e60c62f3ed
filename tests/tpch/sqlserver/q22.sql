-- q22 as sent to SQL Server, one statement per line
SELECT "customer"."c_custkey", "customer"."c_phone", "customer"."c_acctbal" FROM "customer"
SELECT "__correlated_sq_1"."o_custkey" FROM "orders" AS "__correlated_sq_1"
SELECT avg("customer"."c_acctbal") FROM (SELECT "customer"."c_acctbal" FROM "customer" AS "customer" WHERE (("customer"."c_acctbal" > 0.00) AND substr("customer"."c_phone", 1, 2) IN ('13', '31', '23', '29', '30', '18', '17'))) AS "customer"
