/*
 * gwroute: the URL forms of Atlassian's API gateway, where scoped API tokens
 * and service-account OAuth tokens work (issue 10). A site request
 * https://SITE/PATH becomes https://api.atlassian.com/ex/jira/{cloudId}/PATH,
 * or .../ex/confluence/{cloudId}/PATH for Confluence's /wiki/... paths (the
 * path after the prefix is kept exactly, /wiki included); and an agent's
 * own request to api.atlassian.com is recognized only under
 * /ex/{jira|confluence}/{cloudId}/.
 *
 * Layer 2, pure. Never sees a secret.
 */
#ifndef CREDPROXY_GWROUTE_H
#define CREDPROXY_GWROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define GWROUTE_ORIGIN "https://" CONFIG_GATEWAY_HOST
/* "/ex/confluence/" + a cloudId */
#define GWROUTE_MAX_PREFIX (16 + CONFIG_MAX_CLOUD_ID)

enum gwroute_product { GWROUTE_JIRA = 0, GWROUTE_CONFLUENCE };

/* Confluence for "/wiki" and "/wiki/...", "/wiki?..."; Jira for everything else. */
enum gwroute_product gwroute_product_for(const char *path, size_t len);

/* "/ex/jira/ID" (no trailing slash) into out; 0, or -1 when it does not fit or id is empty. */
int gwroute_prefix(enum gwroute_product p, const char *cloud_id, char *out, size_t cap);

/*
 * The gateway URL for a site request's origin-form path (path[0] == '/',
 * or empty for "/"): a new string the caller frees. NULL for a path that
 * could climb out of the prefix upstream ("." or ".." segments, also as
 * %2e, backslashes, encoded '/' or '\'), or when cloud_id is empty.
 */
char *gwroute_url(const char *path, size_t len, const char *cloud_id);

/*
 * An agent's request path on api.atlassian.com: true when it is
 * /ex/jira/ID or /ex/confluence/ID followed by '/', '?' or the end, with ID
 * a cloudId (hex digits and '-', at most CONFIG_MAX_CLOUD_ID; written to
 * cloud_id lowercased). Anything else (other products, /oauth/..., a
 * look-alike such as /ex/jira/ID-evil, encoded slashes, dot segments or
 * backslashes anywhere in the path, which could climb to another cloudId) is
 * false.
 */
bool gwroute_parse(const char *path, size_t len, enum gwroute_product *product, char *cloud_id,
                   size_t cap);

#endif
