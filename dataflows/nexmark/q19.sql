-- Equal prices tie; the comparison checks each auction's top ten prices.
SELECT auction, price FROM (
  SELECT auction, price, row_number() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bid
) WHERE rn <= 10
