WITH p AS (
  SELECT id, name, (epoch_ms(date_time) // 10000) * 10000 AS ws FROM person
), a AS (
  SELECT seller, (epoch_ms(date_time) // 10000) * 10000 AS ws, count(*) AS auctions FROM auction GROUP BY ALL
)
SELECT p.id, p.name, to_timestamp(p.ws / 1000) AS window_start, a.auctions
FROM p JOIN a ON p.id = a.seller AND p.ws = a.ws
