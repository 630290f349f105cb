#!/bin/sh
# A stand-in application for scenario 5 (log processing) in docker compose:
# writes timestamped log events (DEBUG/INFO/WARN/ERROR with a stack trace,
# now and then FATAL) to /var/log/app/app.log, ten a second, and rotates
# the file by renaming it every 1,000 events (app.N.log, still *.log, as
# logback names them). Stop with `docker compose stop demo-app`.
set -eu
dir=${APP_LOG_DIR:-/var/log/app}
mkdir -p "$dir"
i=0
n=1
while :; do
  ts=$(date -u '+%Y-%m-%d %H:%M:%S')
  r=$(( $(od -An -N2 -tu2 /dev/urandom) % 100 ))
  if [ "$r" -lt 15 ]; then
    echo "$ts.000 DEBUG [cart] cache miss for user $i"
  elif [ "$r" -lt 75 ]; then
    echo "$ts.000 INFO  [http] GET /products/$i 200 in $(( r + 3 ))ms"
  elif [ "$r" -lt 90 ]; then
    echo "$ts.000 WARN  [db] slow query on orders took $(( r * 40 ))ms"
  elif [ "$r" -lt 98 ]; then
    printf '%s.000 ERROR [checkout] payment declined for order %s\n    at shop.checkout.Payment.charge(Payment.java:88)\n    at shop.checkout.Checkout.pay(Checkout.java:42)\n' "$ts" "$i"
  else
    echo "$ts.000 FATAL [worker] connection pool exhausted, worker $i exits"
  fi >> "$dir/app.log"
  i=$(( i + 1 ))
  if [ $(( i % 1000 )) -eq 0 ]; then
    mv "$dir/app.log" "$dir/app.$n.log"
    n=$(( n + 1 ))
  fi
  sleep 0.1
done
