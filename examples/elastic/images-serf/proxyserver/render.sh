#!/bin/sh
# nginx's upstream from hipache's list (element 0 is the identifier), then a reload.
f=/etc/nginx/upstreams/frontservers.conf
{
  echo 'upstream frontservers {'
  n=0
  for url in $(redis-cli lrange frontend:localhost 1 -1); do
    echo "    server ${url#http://} max_fails=1 fail_timeout=5s;"
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || echo '    server 127.0.0.1:65535 down;'
  echo '}'
} > "$f.tmp"
mv "$f.tmp" "$f"
if [ -f /run/nginx.pid ]; then nginx -s reload; fi
