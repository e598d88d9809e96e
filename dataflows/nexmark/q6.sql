WITH q AS (
  SELECT A.id, A.seller, A.expires, max(B.price) AS final
  FROM auction A JOIN bid B ON A.id = B.auction
  WHERE B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.seller, A.expires
), ranked AS (
  SELECT *, row_number() OVER (PARTITION BY seller ORDER BY expires DESC, id DESC) AS r FROM q
)
SELECT seller, avg(final) AS avg_price FROM ranked WHERE r <= 10 GROUP BY seller
