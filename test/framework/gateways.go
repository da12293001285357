package framework

// The gateway configurations the documentation gives, which the tests and
// make dev run with Debian's nginx. In both, %[1]s is nginx's working
// directory, %[2]s the address it listens on and %[4]s the upstream.

// NginxGateway is the gateway of docs/token-service.md: auth_request to
// /v1/check over kept-alive upstream connections (%[3]s is the token
// service's address, %[5]s the check's path and query),
// identity headers passed upstream, and the two lines that let a 429 from
// the token service reach the client (nginx answers 500 for any
// auth_request status other than 2xx, 401 and 403).
const NginxGateway = `
daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream privateapp_token_service {
    server %[3]s;
    keepalive 16;
  }
  server {
    listen %[2]s;

    location = /_privateapp_check {
      internal;
      proxy_pass http://privateapp_token_service%[5]s;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
    }

    location / {
      auth_request /_privateapp_check;
      auth_request_set $papp_namespace $upstream_http_x_privateapp_namespace;
      auth_request_set $papp_name $upstream_http_x_privateapp_name;
      auth_request_set $papp_status $upstream_status;
      auth_request_set $papp_retry_after $upstream_http_retry_after;
      auth_request_set $papp_challenge $upstream_http_www_authenticate;
      add_header WWW-Authenticate $papp_challenge always;
      proxy_set_header X-PrivateApp-Namespace $papp_namespace;
      proxy_set_header X-PrivateApp-Name $papp_name;
      auth_request_set $papp_id $upstream_http_x_privateapp_id;
      auth_request_set $papp_user $upstream_http_x_privateapp_user;
      auth_request_set $papp_scopes $upstream_http_x_privateapp_scopes;
      auth_request_set $papp_route $upstream_http_x_privateapp_route;
      proxy_set_header X-PrivateApp-Id $papp_id;
      proxy_set_header X-PrivateApp-User $papp_user;
      proxy_set_header X-PrivateApp-Scopes $papp_scopes;
      proxy_set_header X-PrivateApp-Route $papp_route;
      proxy_set_header Authorization "";
      proxy_pass http://%[4]s;
      error_page 500 = @privateapp_error;
    }

    location @privateapp_error {
      if ($papp_status = 429) {
        add_header Retry-After $papp_retry_after always;
        return 429 "rate limited\n";
      }
      return 500;
    }
  }
}
`

// NginxCallLog is the gateway of docs/calllog.md: NginxGateway's
// auth_request, plus the request id sent to the token service and the
// access log in the call log's JSON over syslog. %[3]s is the token
// service's address with the check's path and query, %[5]s the gateways'
// secret, %[6]s the syslog listener.
const NginxCallLog = `
daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  log_format privateapps escape=json '{"key":"%[5]s","time":"$msec","id":"$request_id",'
    '"namespace":"$papp_namespace","app":"$papp_name","method":"$request_method","host":"$host",'
    '"uri":"$request_uri","status":"$status","duration":"$request_time"}';
  access_log syslog:server=%[6]s,tag=privateapps privateapps;
  server {
    listen %[2]s;

    location = /_privateapp_check {
      internal;
      proxy_pass http://%[3]s;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Request-Id $request_id;
    }

    location / {
      auth_request /_privateapp_check;
      auth_request_set $papp_namespace $upstream_http_x_privateapp_namespace;
      auth_request_set $papp_name $upstream_http_x_privateapp_name;
      proxy_set_header X-PrivateApp-Namespace $papp_namespace;
      proxy_set_header X-PrivateApp-Name $papp_name;
      proxy_set_header Authorization "";
      proxy_pass http://%[4]s;
    }
  }
}
`
