-- wrk script: POST /orders with a valid one-line order for the SKU bench/run.sh seeds.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer_id":"bench","items":[{"sku":"bench-order","quantity":1}],"payment_token":"tok_visa"}'
