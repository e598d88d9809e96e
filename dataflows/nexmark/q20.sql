SELECT B.auction, B.bidder, B.price, B.date_time, A.item_name, A.seller, A.category
FROM bid B JOIN auction A ON B.auction = A.id
WHERE A.category = 10
