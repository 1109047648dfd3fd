#!/bin/sh
# The proxyserver's service: redis (hipache's store) in the background, nginx in the foreground.
set -e
redis-server --daemonize yes --save '' --appendonly no --bind 127.0.0.1
exec nginx -g 'daemon off;'
