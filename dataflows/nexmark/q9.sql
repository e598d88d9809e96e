-- Equal price and time: sluice breaks the tie by the joined row's fields in name order
-- (`bid_extra`, then `bidder`), as documented for `[[top_n]]`.
SELECT * EXCLUDE (rownum) FROM (
  SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, B.extra AS bid_extra,
    row_number() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC, B.extra ASC, B.bidder ASC) AS rownum
  FROM auction A JOIN bid B ON A.id = B.auction
  WHERE B.date_time BETWEEN A.date_time AND A.expires
) WHERE rownum <= 1
