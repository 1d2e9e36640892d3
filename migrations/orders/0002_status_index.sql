-- GET /orders?status= pages through one status without scanning every order.
CREATE INDEX orders_by_status ON orders (status, id);
