SELECT auction, bidder, price * 0.908 AS price_eur, date_time FROM bid
