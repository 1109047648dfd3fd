#!/bin/sh
# frontserver_reload: nginx re-reads its config, resolving appserver again (HUP).
kill -HUP "$(cat /run/nginx.pid)"
