-- Bids at the same time tie; the comparison checks each key's latest time.
SELECT bidder, auction, max(date_time) AS date_time FROM bid GROUP BY ALL
