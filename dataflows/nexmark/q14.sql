SELECT auction, bidder, 0.908 * price AS price_eur,
  CASE WHEN hour(date_time AT TIME ZONE 'UTC') BETWEEN 8 AND 18 THEN 'dayTime'
       WHEN hour(date_time AT TIME ZONE 'UTC') <= 6 OR hour(date_time AT TIME ZONE 'UTC') >= 20 THEN 'nightTime'
       ELSE 'otherTime' END AS bid_time_type,
  date_time, extra
FROM bid WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000
