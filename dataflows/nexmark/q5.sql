WITH b AS (SELECT auction, epoch_ms(date_time) AS t FROM bid),
w AS (SELECT auction, (t - t % 2000) - k * 2000 AS ws FROM b, range(0, 5) r(k)),
c AS (SELECT ws, auction, count(*) AS num FROM w GROUP BY ALL),
m AS (SELECT ws, max(num) AS mx FROM c GROUP BY ws)
SELECT to_timestamp(ws / 1000) AS window_start, auction, num FROM c JOIN m USING (ws) WHERE num = mx
