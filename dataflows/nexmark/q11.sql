-- Sessions as gaps and islands: a bid opens a session when it comes 10 s or more after the
-- bidder's previous bid. A session ends 10 s after its last bid.
WITH s AS (
    SELECT bidder, date_time,
           CASE WHEN date_time - lag(date_time) OVER (PARTITION BY bidder ORDER BY date_time)
                     < INTERVAL 10 SECOND THEN 0 ELSE 1 END AS new
    FROM bid
), g AS (
    SELECT bidder, date_time,
           sum(new) OVER (PARTITION BY bidder ORDER BY date_time ROWS UNBOUNDED PRECEDING) AS sid
    FROM s
)
SELECT bidder, count(*) AS bid_count, min(date_time) AS window_start,
       max(date_time) + INTERVAL 10 SECOND AS window_end
FROM g GROUP BY bidder, sid
