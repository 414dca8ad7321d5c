// UCX's UCP API (Debian: libucx-dev), as a Swift system library module.
// Its status-pointer checks are macros and its parameter structs carry
// unions and field masks Swift handles poorly: one inline function per call,
// filling the parameters, no logic.
#ifndef C_UCX_SHIM_H
#define C_UCX_SHIM_H
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <ucp/api/ucp.h>

static inline int cfq_ucs_ptr_is_ptr(ucs_status_ptr_t p) { return UCS_PTR_IS_PTR(p); }
static inline int cfq_ucs_ptr_is_err(ucs_status_ptr_t p) { return UCS_PTR_IS_ERR(p); }
static inline ucs_status_t cfq_ucs_ptr_status(ucs_status_ptr_t p) { return UCS_PTR_STATUS(p); }

/* ucp_init (a macro over ucp_init_version): active messages and wake-ups,
 * requests with no extra space. Listeners bind with SO_REUSEADDR (the
 * connection managers' CM_REUSEADDR, unless the environment sets
 * UCX_CM_REUSEADDR): a daemon that closed its connections first leaves
 * them in TIME_WAIT on its port, and without it a restart could not listen
 * there for a minute. */
static inline ucs_status_t cfq_ucp_init(ucp_context_h *context) {
    ucp_params_t params;
    memset(&params, 0, sizeof params);
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    ucp_config_t *config = NULL;
    if (ucp_config_read(NULL, NULL, &config) != UCS_OK) config = NULL;
    /* An option of UCX's transports, not of UCP: ucp_config_modify keeps it for them. */
    if (config != NULL && getenv("UCX_CM_REUSEADDR") == NULL) (void)ucp_config_modify(config, "CM_REUSEADDR", "y");
    ucs_status_t status = ucp_init(&params, config, context);
    if (config != NULL) ucp_config_release(config);
    return status;
}

/* A worker driven by one thread at a time (SERIALIZED: it is made on one
 * thread and driven by another, and a controller's proxy and the
 * controller's own thread take turns on it under a mutex). */
static inline ucs_status_t cfq_ucp_worker_create(ucp_context_h context, ucp_worker_h *worker) {
    ucp_worker_params_t params;
    memset(&params, 0, sizeof params);
    params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    params.thread_mode = UCS_THREAD_MODE_SERIALIZED;
    return ucp_worker_create(context, &params, worker);
}

/* The active-message handler for `id`. */
static inline ucs_status_t cfq_ucp_set_am_handler(ucp_worker_h worker, unsigned id, ucp_am_recv_callback_t callback,
                                                  void *arg) {
    ucp_am_handler_param_t params;
    memset(&params, 0, sizeof params);
    params.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
    params.id = id;
    params.cb = callback;
    params.arg = arg;
    return ucp_worker_set_am_recv_handler(worker, &params);
}

/* Whether a received message's data must be fetched (rendezvous) rather
 * than read in the callback (eager). */
static inline int cfq_ucp_am_is_rendezvous(const ucp_am_recv_param_t *param) {
    return (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
}

/* A listener on `address`, calling `callback` with each connection request. */
static inline ucs_status_t cfq_ucp_listen(ucp_worker_h worker, const struct sockaddr *address, socklen_t length,
                                          ucp_listener_conn_callback_t callback, void *arg, ucp_listener_h *listener) {
    ucp_listener_params_t params;
    memset(&params, 0, sizeof params);
    params.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
    params.sockaddr.addr = address;
    params.sockaddr.addrlen = length;
    params.conn_handler.cb = callback;
    params.conn_handler.arg = arg;
    return ucp_listener_create(worker, &params, listener);
}

/* The port a listener bound (for port 0), or 0. */
static inline uint16_t cfq_ucp_listener_port(ucp_listener_h listener) {
    ucp_listener_attr_t attr;
    memset(&attr, 0, sizeof attr);
    attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
    if (ucp_listener_query(listener, &attr) != UCS_OK) return 0;
    if (attr.sockaddr.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&attr.sockaddr)->sin_port);
    if (attr.sockaddr.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&attr.sockaddr)->sin6_port);
    return 0;
}

/* An endpoint to a listener at `address` (client side), or from a
 * connection request (server side); peer failures reported to `on_error`. */
static inline ucs_status_t cfq_ucp_connect(ucp_worker_h worker, const struct sockaddr *address, socklen_t length,
                                           ucp_conn_request_h request, ucp_err_handler_cb_t on_error, void *arg,
                                           ucp_ep_h *endpoint) {
    ucp_ep_params_t params;
    memset(&params, 0, sizeof params);
    params.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
    params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    params.err_handler.cb = on_error;
    params.err_handler.arg = arg;
    if (request) {
        params.field_mask |= UCP_EP_PARAM_FIELD_CONN_REQUEST;
        params.conn_request = request;
    } else {
        params.field_mask |= UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
        params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
        params.sockaddr.addr = address;
        params.sockaddr.addrlen = length;
    }
    return ucp_ep_create(worker, &params, endpoint);
}

/* Sends active message `id` (header and data, both copied or sent before
 * the returned request completes; NULL: done already). */
static inline ucs_status_ptr_t cfq_ucp_am_send(ucp_ep_h endpoint, unsigned id, const void *header, size_t header_length,
                                               const void *data, size_t length) {
    ucp_request_param_t params;
    memset(&params, 0, sizeof params);
    params.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    params.flags = UCP_AM_SEND_FLAG_REPLY;
    return ucp_am_send_nbx(endpoint, id, header, header_length, data, length, &params);
}

/* Fetches a rendezvous message's data into `buffer` (NULL: done already). */
static inline ucs_status_ptr_t cfq_ucp_am_receive(ucp_worker_h worker, void *data_descriptor, void *buffer,
                                                  size_t length) {
    ucp_request_param_t params;
    memset(&params, 0, sizeof params);
    return ucp_am_recv_data_nbx(worker, data_descriptor, buffer, length, &params);
}

/* Flushes an endpoint: completes when everything sent on it has been delivered. */
static inline ucs_status_ptr_t cfq_ucp_flush(ucp_ep_h endpoint) {
    ucp_request_param_t params;
    memset(&params, 0, sizeof params);
    return ucp_ep_flush_nbx(endpoint, &params);
}

/* Closes an endpoint: flushes it, or with `force` drops it (after a peer failure). */
static inline ucs_status_ptr_t cfq_ucp_close(ucp_ep_h endpoint, int force) {
    ucp_request_param_t params;
    memset(&params, 0, sizeof params);
    params.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    params.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    return ucp_ep_close_nbx(endpoint, &params);
}
#endif
