WITH m AS (
  SELECT max(price) AS maxprice, (epoch_ms(date_time) // 10000) * 10000 + 10000 AS we
  FROM bid GROUP BY ALL
)
SELECT b.auction, b.price, b.bidder, b.date_time, b.extra, to_timestamp(m.we / 1000) AS window_end
FROM bid b JOIN m ON b.price = m.maxprice
WHERE epoch_ms(b.date_time) BETWEEN m.we - 10000 AND m.we
