-- top_n as sent to SQL Server, one statement per line
SELECT "nation"."n_name" FROM (SELECT "nation"."n_name", "nation"."n_nationkey" FROM "nation" AS "nation" ORDER BY "nation"."n_nationkey" DESC OFFSET 2 ROWS FETCH FIRST 5 ROWS ONLY) AS "derived_limit"
