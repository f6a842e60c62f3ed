-- q17 as sent to SQL Server, one statement per line
SELECT "lineitem"."l_quantity", "lineitem"."l_extendedprice", "part"."p_partkey" FROM "lineitem" AS "lineitem" INNER JOIN (SELECT "part"."p_partkey" FROM "part" AS "part" WHERE (("part"."p_brand" = 'Brand#23') AND ("part"."p_container" = 'MED BOX'))) AS "part" ON "lineitem"."l_partkey" = "part"."p_partkey"
SELECT "lineitem"."l_partkey", avg("lineitem"."l_quantity") FROM "lineitem" AS "lineitem" GROUP BY "lineitem"."l_partkey"
