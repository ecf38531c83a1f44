/*
 * models.c: the model routes: GET /v1/models, and the admin's requests to
 * load or unload a declared model, which the service carries out as memory
 * allows (202: asked, not done).
 */
#include "http/http_internal.h"

enum MHD_Result op__models_list(op__req_t *q) {
  json_t *m = op_service_models_json(q->http->svc);
  return m ? op__send_json(q, 200, m, NULL, NULL)
           : op__send_problem(q, 503, "models are not ready yet", NULL, NULL, NULL);
}

static enum MHD_Result model_request(op__req_t *q, int load) {
  if (q->http->auth && !q->token->admin)
    return op__send_problem(q, 403, "loading and unloading models needs an admin token", NULL, NULL, NULL);
  int rc = op_service_model_request(q->http->svc, q->capture, load);
  if (rc == OP_ENOTFOUND)
    return op__send_problem(q, 404, "no such model (see GET /v1/models)", NULL, NULL, NULL);
  if (rc < 0)
    return op__send_problem(q, 503, "too many model requests at once; try again", NULL, "Retry-After", "1");
  return op__send_json(q, 202, json_pack("{s:s, s:s}", "model", q->capture, "action", load ? "load" : "unload"), NULL,
                       NULL);
}

enum MHD_Result op__model_load(op__req_t *q) {
  return model_request(q, 1);
}

enum MHD_Result op__model_unload(op__req_t *q) {
  return model_request(q, 0);
}
