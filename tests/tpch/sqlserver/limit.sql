-- limit as sent to SQL Server, one statement per line
SELECT * FROM (SELECT TOP (5) "nation"."n_name" FROM "nation") AS "nation"
