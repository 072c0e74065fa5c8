/*
 * policy: see policy.h.
 *
 * The classifier is one table (policy_rules below). Each row names the API
 * family, the method, a path pattern relative to the family's prefix, the
 * operation class and where the scope comes from. Patterns are '/'-separated
 * segments: a literal (matched case-insensitively), `*` (any one segment),
 * `**` (any rest, also none), or a capture that only matches a value of its
 * kind and so also names the scope:
 *   {issue}    an issue key (OPS-12 -> project OPS) or a numeric issue id (lookup)
 *   {project}  a project key or a numeric project id (lookup)
 *   {content}  a numeric Confluence content id: page, blog post, comment, attachment (lookup)
 *   {spacekey} a Confluence space key
 *   {spaceid}  a numeric Confluence v2 space id (lookup)
 * The first matching row wins, so specific rows come before general ones.
 *
 * Sources for the rows (read 2026-11-30 through the project's search tools;
 * the operation names are Atlassian's):
 *   Jira platform v3/v2 reference:
 *     https://developer.atlassian.com/cloud/jira/platform/rest/v3/intro/
 *     (api-group-issues, -issue-search, -issue-comments, -issue-worklogs,
 *     -issue-attachments, -issue-links, -issue-remote-links, -issue-watchers,
 *     -issue-votes, -issue-properties, -jql, -jira-expressions, -projects,
 *     -myself, -server-info, -issue-fields, -filters, -dashboards, -users,
 *     -groups, -workflows, -permission-schemes, -webhooks, -app-properties);
 *     POST reads: "Search for issues using JQL (POST)" /search and
 *     /search/jql, "Count issues using JQL" /search/approximate-count
 *     (JqlCountRequestBean: {jql}), "Parse JQL query" /jql/parse, "Sanitize
 *     JQL queries" /jql/sanitize, "Check issues against JQL" /jql/match,
 *     "Get field auto complete suggestions" (POST /jql/autocompletedata),
 *     "Evaluate Jira expression" /expression/eval and /expression/evaluate,
 *     "Analyse Jira expression" /expression/analyse, "Bulk fetch issues"
 *     /issue/bulkfetch, "Bulk fetch changelogs" /changelog/bulkfetch, "Get
 *     worklogs" /worklog/list, "Get comments by IDs" /comment/list, "Get is
 *     watching issue bulk" /issue/watching, "Get bulk permissions"
 *     /permissions/check, "Get permitted projects" /permissions/project,
 *     "Get changelogs by IDs" /issue/{key}/changelog/list.
 *   Jira Software (Agile) 1.0: https://developer.atlassian.com/cloud/jira/software/rest/intro/
 *     (board, sprint, epic, backlog, issue; its issue lists take a board or
 *     sprint id whose projects the proxy cannot tell: undeterminable).
 *   Jira Service Management: https://developer.atlassian.com/cloud/jira/service-desk/rest/intro/
 *     (request, servicedesk, customer, organization, knowledgebase).
 *   Confluence v1: https://developer.atlassian.com/cloud/confluence/rest/v1/intro/
 *     (content, content/search and search with CQL, space, user, group).
 *   Confluence v2: https://developer.atlassian.com/cloud/confluence/rest/v2/intro/
 *     (pages, blogposts, footer-comments, inline-comments, spaces,
 *     attachments, whiteboards, folders, databases, custom-content;
 *     POST /users-bulk and /content/convert-ids-to-types are reads).
 *
 * Held bodies are parsed with libjansson: Debian-packaged and maintained,
 * already installed, strict by default (no trailing garbage, no NUL in
 * strings unless asked), with JSON_REJECT_DUPLICATES so an agent cannot send
 * two "jql" members and have the proxy check one while Jira reads the
 * other, json_loadb() takes a length (bodies are not NUL-terminated), and
 * its parser bounds nesting depth. Bodies reach it only after the pipeline
 * held at most POLICY_MAX_BODY bytes.
 */
#include "policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "util.h"

#define POLICY_MAX_SEGMENTS 32 /* deeper paths are refused as `admin`, scope undeterminable */
#define POLICY_MAX_SEGMENT 256 /* one decoded path segment */

enum policy_api {
    API_JIRA = 0, /* /rest/api/{2,3,latest}/ */
    API_AGILE,    /* /rest/agile/{1.0,latest}/ */
    API_JSM,      /* /rest/servicedeskapi/ */
    API_CONF1,    /* /wiki/rest/api/ */
    API_CONF2,    /* /wiki/api/v2/ */
    API_OTHER_JIRA,
    API_OTHER_CONF,
};

struct policy_rule {
    enum policy_api api;
    const char *method; /* "GET" also matches HEAD */
    const char *pattern;
    enum policy_class cls;
    enum policy_scope_src src;
    enum policy_body body;
};

#define READ POLICY_READ
#define COMMENT POLICY_COMMENT
#define TRANS POLICY_TRANSITION
#define WRITE POLICY_WRITE
#define DEL POLICY_DELETE
#define ADMIN POLICY_ADMIN
#define S_NONE POLICY_SCOPE_NONE
#define S_PATH POLICY_SCOPE_PATH
#define S_BODY POLICY_SCOPE_BODY
#define S_QJQL POLICY_SCOPE_QUERY_JQL
#define S_BJQL POLICY_SCOPE_BODY_JQL
#define S_QCQL POLICY_SCOPE_QUERY_CQL
#define S_QSPACE POLICY_SCOPE_QUERY_SPACE
#define S_UNDET POLICY_SCOPE_UNDETERMINABLE

/* One row: API family, method, pattern, class, scope source, body check. */
#define ROW(api, m, p, c, s, b)                                                                    \
    {                                                                                              \
        api, m, p, c, s, b                                                                         \
    }
/* Per family, without and with (the ...B forms) a body check. */
#define J(m, p, c, s) ROW(API_JIRA, m, p, c, s, POLICY_BODY_NONE)
#define JB(m, p, c, s, b) ROW(API_JIRA, m, p, c, s, b)
#define AG(m, p, c, s) ROW(API_AGILE, m, p, c, s, POLICY_BODY_NONE)
#define SD(m, p, c, s) ROW(API_JSM, m, p, c, s, POLICY_BODY_NONE)
#define C1(m, p, c, s) ROW(API_CONF1, m, p, c, s, POLICY_BODY_NONE)
#define C1B(m, p, c, s, b) ROW(API_CONF1, m, p, c, s, b)
#define C2(m, p, c, s) ROW(API_CONF2, m, p, c, s, POLICY_BODY_NONE)
#define C2B(m, p, c, s, b) ROW(API_CONF2, m, p, c, s, b)

static const struct policy_rule policy_rules[] = {
    /* ---- Jira platform: searches (POST ones are reads; JQL is narrowed) ---- */
    J("GET", "search", READ, S_QJQL),
    JB("POST", "search", READ, S_BJQL, POLICY_BODY_JQL),
    J("GET", "search/jql", READ, S_QJQL),
    JB("POST", "search/jql", READ, S_BJQL, POLICY_BODY_JQL),
    JB("POST", "search/approximate-count", READ, S_BJQL, POLICY_BODY_JQL),
    J("POST", "jql/parse", READ, S_NONE),    /* parses the query text only */
    J("POST", "jql/sanitize", READ, S_NONE), /* rewrites the query text only */
    J("POST", "jql/match", READ, S_UNDET),   /* issue ids against JQL: probes any project */
    J("GET", "jql/autocompletedata", READ, S_NONE),
    J("POST", "jql/autocompletedata", READ, S_NONE),
    J("GET", "jql/autocompletedata/suggestions", READ, S_NONE),
    J("GET", "jql/function/computation", ADMIN, S_NONE),
    J("POST", "expression/eval", READ, S_UNDET), /* evaluates over any issue or JQL */
    J("POST", "expression/evaluate", READ, S_UNDET),
    J("POST", "expression/analyse", READ, S_NONE),
    J("POST", "issue/bulkfetch", READ, S_UNDET), /* issue ids or keys in the body */
    J("POST", "changelog/bulkfetch", READ, S_UNDET),
    J("POST", "worklog/list", READ, S_UNDET),
    J("GET", "worklog/deleted", READ, S_UNDET),
    J("GET", "worklog/updated", READ, S_UNDET),
    J("POST", "comment/list", READ, S_UNDET),
    J("POST", "issue/watching", READ, S_UNDET),
    J("POST", "permissions/check", READ, S_NONE),
    J("POST", "permissions/project", READ, S_NONE),
    J("GET", "issue/picker", READ, S_UNDET), /* suggestions from every project */
    /* ---- Jira platform: site-wide reads ---- */
    J("GET", "myself", READ, S_NONE),
    J("GET", "myself/**", READ, S_NONE),
    J("GET", "serverInfo", READ, S_NONE),
    J("GET", "field", READ, S_NONE),
    J("GET", "field/**", READ, S_NONE),
    J("GET", "issuetype", READ, S_NONE),
    J("GET", "issuetype/**", READ, S_NONE),
    J("GET", "priority", READ, S_NONE),
    J("GET", "priority/**", READ, S_NONE),
    J("GET", "status", READ, S_NONE),
    J("GET", "status/**", READ, S_NONE),
    J("GET", "statuses/**", READ, S_NONE),
    J("GET", "statuscategory/**", READ, S_NONE),
    J("GET", "resolution", READ, S_NONE),
    J("GET", "resolution/**", READ, S_NONE),
    J("GET", "issueLinkType", READ, S_NONE),
    J("GET", "issueLinkType/**", READ, S_NONE),
    J("GET", "configuration", READ, S_NONE),
    J("GET", "configuration/**", READ, S_NONE),
    J("GET", "mypermissions", READ, S_NONE),
    J("GET", "permissions", READ, S_NONE),
    J("GET", "user", READ, S_NONE),
    J("GET", "user/**", READ, S_NONE),
    J("GET", "users/**", READ, S_NONE),
    J("GET", "groupuserpicker", READ, S_NONE),
    J("GET", "groups/picker", READ, S_NONE),
    J("GET", "label", READ, S_NONE),
    J("GET", "application-properties", READ, S_NONE),
    J("GET", "events", READ, S_NONE),
    J("GET", "dashboard", READ, S_NONE),
    J("GET", "dashboard/**", READ, S_NONE),
    J("GET", "filter/**", READ, S_NONE), /* saved JQL text, not issues */
    J("GET", "issue/createmeta", READ, S_NONE),
    J("GET", "issue/createmeta/{project}/issuetypes", READ, S_PATH),
    J("GET", "issue/createmeta/{project}/issuetypes/*", READ, S_PATH),
    J("GET", "attachment/meta", READ, S_NONE),
    J("GET", "project", READ, S_NONE),        /* the project list: site metadata */
    J("GET", "project/search", READ, S_NONE), /* likewise */
    J("GET", "project/recent", READ, S_NONE),
    J("GET", "project/type", READ, S_NONE),
    J("GET", "project/type/**", READ, S_NONE),
    J("GET", "projectCategory", READ, S_NONE),
    /* ---- Jira platform: issues ---- */
    JB("POST", "issue", WRITE, S_BODY, POLICY_BODY_JIRA_ISSUE),
    JB("POST", "issue/bulk", WRITE, S_BODY, POLICY_BODY_JIRA_BULK),
    J("GET", "issue/{issue}", READ, S_PATH),
    J("GET", "issue/{issue}/**", READ, S_PATH),
    J("POST", "issue/{issue}/changelog/list", READ, S_PATH),
    J("PUT", "issue/{issue}", WRITE, S_PATH),
    J("DELETE", "issue/{issue}", DEL, S_PATH),
    J("POST", "issue/{issue}/comment", COMMENT, S_PATH),
    J("PUT", "issue/{issue}/comment/*", COMMENT, S_PATH),
    J("DELETE", "issue/{issue}/comment/*", DEL, S_PATH),
    J("PUT", "issue/{issue}/comment/*/properties/*", COMMENT, S_PATH),
    J("POST", "issue/{issue}/transitions", TRANS, S_PATH),
    J("PUT", "issue/{issue}/assignee", WRITE, S_PATH),
    J("POST", "issue/{issue}/worklog", WRITE, S_PATH),
    J("PUT", "issue/{issue}/worklog/*", WRITE, S_PATH),
    J("DELETE", "issue/{issue}/worklog/*", DEL, S_PATH),
    J("POST", "issue/{issue}/attachments", WRITE, S_PATH),
    J("POST", "issue/{issue}/remotelink", WRITE, S_PATH),
    J("PUT", "issue/{issue}/remotelink/*", WRITE, S_PATH),
    J("DELETE", "issue/{issue}/remotelink", DEL, S_PATH),
    J("DELETE", "issue/{issue}/remotelink/*", DEL, S_PATH),
    J("POST", "issue/{issue}/watchers", WRITE, S_PATH),
    J("DELETE", "issue/{issue}/watchers", WRITE, S_PATH),
    J("POST", "issue/{issue}/votes", WRITE, S_PATH),
    J("DELETE", "issue/{issue}/votes", WRITE, S_PATH),
    J("PUT", "issue/{issue}/properties/*", WRITE, S_PATH),
    J("DELETE", "issue/{issue}/properties/*", DEL, S_PATH),
    J("POST", "issue/{issue}/notify", WRITE, S_PATH),
    J("PUT", "issue/{issue}/archive", ADMIN, S_PATH),
    J("POST", "issueLink", WRITE, S_UNDET), /* two issues named in the body */
    J("GET", "issueLink/*", READ, S_UNDET),
    J("DELETE", "issueLink/*", DEL, S_UNDET),
    J("GET", "attachment/content/*", READ, S_UNDET),
    J("GET", "attachment/thumbnail/*", READ, S_UNDET),
    J("GET", "attachment/*", READ, S_UNDET),
    J("GET", "attachment/*/expand/*", READ, S_UNDET),
    J("DELETE", "attachment/*", DEL, S_UNDET),
    J("GET", "comment/*/properties", READ, S_UNDET),
    J("GET", "comment/*/properties/*", READ, S_UNDET),
    /* ---- Jira platform: user-owned things ---- */
    J("POST", "filter", WRITE, S_NONE),
    J("PUT", "filter/*", WRITE, S_NONE),
    J("DELETE", "filter/*", DEL, S_NONE),
    J("POST", "dashboard", WRITE, S_NONE),
    J("PUT", "dashboard/*", WRITE, S_NONE),
    J("DELETE", "dashboard/*", DEL, S_NONE),
    /* ---- Jira platform: projects (reads scoped; changes are admin) ---- */
    J("GET", "project/{project}", READ, S_PATH),
    J("GET", "project/{project}/**", READ, S_PATH),
    J("POST", "project", ADMIN, S_NONE),
    J("PUT", "project/{project}", ADMIN, S_PATH),
    J("DELETE", "project/{project}", ADMIN, S_PATH),
    J("POST", "project/{project}/**", ADMIN, S_PATH),
    J("PUT", "project/{project}/**", ADMIN, S_PATH),
    J("DELETE", "project/{project}/**", ADMIN, S_PATH),
    J("POST", "version", ADMIN, S_NONE),
    J("POST", "component", ADMIN, S_NONE),
    J("GET", "version/*", READ, S_UNDET),
    J("GET", "component/*", READ, S_UNDET),
    /* ---- Jira platform: administration (named for the record; unknown writes are admin too) -- */
    J("POST", "user", ADMIN, S_NONE),
    J("DELETE", "user", ADMIN, S_NONE),
    J("POST", "group", ADMIN, S_NONE),
    J("DELETE", "group", ADMIN, S_NONE),
    J("POST", "group/user", ADMIN, S_NONE),
    J("DELETE", "group/user", ADMIN, S_NONE),
    J("PUT", "application-properties/*", ADMIN, S_NONE),
    J("POST", "webhook", ADMIN, S_NONE),
    J("DELETE", "webhook", ADMIN, S_NONE),
    J("POST", "workflow", ADMIN, S_NONE),
    J("POST", "workflows/create", ADMIN, S_NONE),
    J("POST", "workflowscheme", ADMIN, S_NONE),
    J("POST", "permissionscheme", ADMIN, S_NONE),
    J("PUT", "permissionscheme/*", ADMIN, S_NONE),
    J("POST", "field", ADMIN, S_NONE),
    J("PUT", "app/field/*/value", ADMIN, S_NONE),
    J("PUT", "settings/columns", ADMIN, S_NONE),
    J("POST", "jql/pdcleaner", ADMIN, S_NONE),

    /* ---- Jira Software (Agile) ---- */
    AG("GET", "board", READ, S_NONE),
    AG("GET", "board/*", READ, S_NONE),
    AG("GET", "board/*/configuration", READ, S_NONE),
    AG("GET", "board/*/sprint", READ, S_NONE),
    AG("GET", "board/*/project", READ, S_NONE),
    AG("GET", "board/*/issue", READ, S_UNDET),   /* the board's filter spans projects */
    AG("GET", "board/*/backlog", READ, S_UNDET), /* likewise */
    AG("GET", "board/*/epic", READ, S_UNDET),
    AG("GET", "board/*/epic/*/issue", READ, S_UNDET),
    AG("GET", "board/*/sprint/*/issue", READ, S_UNDET),
    AG("GET", "board/*/version/*/issue", READ, S_UNDET),
    AG("POST", "board", ADMIN, S_NONE),
    AG("DELETE", "board/*", ADMIN, S_NONE),
    AG("GET", "sprint/*", READ, S_NONE),
    AG("GET", "sprint/*/issue", READ, S_UNDET),
    AG("POST", "sprint", WRITE, S_UNDET),
    AG("POST", "sprint/*", WRITE, S_UNDET),
    AG("PUT", "sprint/*", WRITE, S_UNDET),
    AG("DELETE", "sprint/*", DEL, S_UNDET),
    AG("POST", "sprint/*/issue", WRITE, S_UNDET),
    AG("GET", "epic/{issue}", READ, S_PATH),
    AG("GET", "epic/{issue}/issue", READ, S_UNDET), /* an epic's children may live elsewhere */
    AG("GET", "epic/none/issue", READ, S_UNDET),
    AG("POST", "epic/{issue}/issue", WRITE, S_UNDET),
    AG("GET", "issue/{issue}", READ, S_PATH),
    AG("GET", "issue/{issue}/estimation", READ, S_PATH),
    AG("PUT", "issue/{issue}/estimation", WRITE, S_PATH),
    AG("PUT", "issue/rank", WRITE, S_UNDET),
    AG("POST", "backlog/issue", WRITE, S_UNDET),

    /* ---- Jira Service Management ---- */
    SD("GET", "info", READ, S_NONE),
    SD("GET", "servicedesk", READ, S_NONE),
    SD("GET", "servicedesk/*", READ, S_NONE),
    SD("GET", "servicedesk/*/requesttype", READ, S_NONE),
    SD("GET", "servicedesk/*/requesttype/**", READ, S_NONE),
    SD("GET", "servicedesk/*/queue", READ, S_NONE),
    SD("GET", "servicedesk/*/queue/*/issue", READ, S_UNDET),
    SD("GET", "servicedesk/*/knowledgebase/article", READ, S_UNDET),
    SD("GET", "knowledgebase/article", READ, S_UNDET),
    SD("GET", "request", READ, S_UNDET),   /* the caller's requests across desks */
    SD("POST", "request", WRITE, S_UNDET), /* serviceDeskId in the body */
    SD("GET", "request/{issue}", READ, S_PATH),
    SD("GET", "request/{issue}/**", READ, S_PATH),
    SD("POST", "request/{issue}/comment", COMMENT, S_PATH),
    SD("POST", "request/{issue}/transition", TRANS, S_PATH),
    SD("POST", "request/{issue}/approval/*", WRITE, S_PATH),
    SD("POST", "request/{issue}/attachment", WRITE, S_PATH),
    SD("POST", "request/{issue}/participant", WRITE, S_PATH),
    SD("DELETE", "request/{issue}/participant", WRITE, S_PATH),
    SD("POST", "request/{issue}/feedback", WRITE, S_PATH),
    SD("DELETE", "request/{issue}/feedback", DEL, S_PATH),
    SD("PUT", "request/{issue}/notification", WRITE, S_PATH),
    SD("DELETE", "request/{issue}/notification", WRITE, S_PATH),
    SD("POST", "customer", ADMIN, S_NONE),
    SD("POST", "organization", ADMIN, S_NONE),
    SD("DELETE", "organization/*", ADMIN, S_NONE),
    SD("POST", "servicedesk/*/customer", ADMIN, S_NONE),
    SD("POST", "servicedesk/*/organization", ADMIN, S_NONE),

    /* ---- Confluence v1 ---- */
    C1("GET", "user/current", READ, S_NONE),
    C1("GET", "user", READ, S_NONE),
    C1("GET", "user/**", READ, S_NONE),
    C1("GET", "group", READ, S_NONE),
    C1("GET", "group/**", READ, S_NONE),
    C1("GET", "settings/**", READ, S_NONE),
    C1("GET", "longtask", READ, S_NONE),
    C1("GET", "longtask/*", READ, S_NONE),
    C1("GET", "template/**", READ, S_NONE),
    C1("GET", "search", READ, S_QCQL),
    C1("GET", "content/search", READ, S_QCQL),
    C1("GET", "search/user", READ, S_NONE),
    C1("GET", "content", READ, S_QSPACE), /* spaceKey= names the space; without it: refused */
    C1("GET", "content/scan", READ, S_QSPACE),
    C1B("POST", "content", WRITE, S_BODY, POLICY_BODY_CONF_SPACEKEY),
    C1("POST", "content/blueprint/instance/*", WRITE, S_UNDET),
    C1("GET", "content/{content}", READ, S_PATH),
    C1("GET", "content/{content}/**", READ, S_PATH),
    C1("POST", "content/{content}/permission/check", READ, S_PATH),
    C1B("PUT", "content/{content}", WRITE, S_PATH, POLICY_BODY_CONF_EDIT),
    C1("DELETE", "content/{content}", DEL, S_PATH),
    C1("POST", "content/{content}/child/attachment", WRITE, S_PATH),
    C1("PUT", "content/{content}/child/attachment", WRITE, S_PATH),
    C1("POST", "content/{content}/child/attachment/*/data", WRITE, S_PATH),
    C1("PUT", "content/{content}/child/attachment/*", WRITE, S_PATH),
    C1("POST", "content/{content}/label", WRITE, S_PATH),
    C1("DELETE", "content/{content}/label", WRITE, S_PATH),
    C1("DELETE", "content/{content}/label/*", WRITE, S_PATH),
    C1("POST", "content/{content}/property", WRITE, S_PATH),
    C1("PUT", "content/{content}/property/*", WRITE, S_PATH),
    C1("DELETE", "content/{content}/property/*", DEL, S_PATH),
    C1("POST", "content/{content}/version", WRITE, S_PATH),
    C1("DELETE", "content/{content}/version/*", DEL, S_PATH),
    C1("POST", "content/{content}/restriction", ADMIN, S_PATH),
    C1("PUT", "content/{content}/restriction", ADMIN, S_PATH),
    C1("DELETE", "content/{content}/restriction/**", ADMIN, S_PATH),
    C1("PUT", "content/{content}/restriction/**", ADMIN, S_PATH),
    C1("POST", "content/{content}/copy", WRITE, S_UNDET), /* the destination is in the body */
    C1("POST", "content/{content}/pagehierarchy/copy", WRITE, S_UNDET),
    C1("PUT", "content/{content}/move/*/*", WRITE, S_UNDET), /* the target may be elsewhere */
    C1("POST", "contentbody/convert/*", READ, S_UNDET),      /* macros can include other spaces */
    C1("GET", "space", READ, S_NONE),
    C1("GET", "space/{spacekey}", READ, S_PATH),
    C1("GET", "space/{spacekey}/**", READ, S_PATH),
    C1("POST", "space", ADMIN, S_NONE),
    C1("POST", "space/_private", ADMIN, S_NONE),
    C1("PUT", "space/{spacekey}", ADMIN, S_PATH),
    C1("DELETE", "space/{spacekey}", ADMIN, S_PATH),
    C1("POST", "space/{spacekey}/**", ADMIN, S_PATH),
    C1("PUT", "space/{spacekey}/**", ADMIN, S_PATH),
    C1("DELETE", "space/{spacekey}/**", ADMIN, S_PATH),
    C1("GET", "label", READ, S_UNDET),
    C1("GET", "inlinetasks/search", READ, S_UNDET),
    C1("GET", "audit", READ, S_NONE),
    C1("POST", "audit", ADMIN, S_NONE),
    C1("POST", "group", ADMIN, S_NONE),
    C1("POST", "group/userByKey", ADMIN, S_NONE),

    /* ---- Confluence v2 ---- */
    C2("POST", "users-bulk", READ, S_NONE),
    C2("POST", "user/access/check-access-by-email", READ, S_NONE),
    C2("POST", "content/convert-ids-to-types", READ, S_NONE),
    C2("GET", "spaces", READ, S_NONE),
    C2("GET", "spaces/{spaceid}", READ, S_PATH),
    C2("GET", "spaces/{spaceid}/**", READ, S_PATH),
    C2("POST", "spaces", ADMIN, S_NONE),
    C2("POST", "spaces/{spaceid}/**", ADMIN, S_PATH),
    C2("PUT", "spaces/{spaceid}/**", ADMIN, S_PATH),
    C2("DELETE", "spaces/{spaceid}", ADMIN, S_PATH),
    C2("DELETE", "spaces/{spaceid}/**", ADMIN, S_PATH),
    C2("GET", "pages", READ, S_UNDET), /* every space */
    C2("GET", "blogposts", READ, S_UNDET),
    C2("GET", "footer-comments", READ, S_UNDET),
    C2("GET", "inline-comments", READ, S_UNDET),
    C2("GET", "attachments", READ, S_UNDET),
    C2("GET", "tasks", READ, S_UNDET),
    C2("GET", "tasks/*", READ, S_UNDET),
    C2("PUT", "tasks/*", WRITE, S_UNDET),
    C2("GET", "custom-content", READ, S_UNDET),
    C2("GET", "labels", READ, S_NONE),
    C2("GET", "labels/*/**", READ, S_UNDET),
    C2B("POST", "pages", WRITE, S_BODY, POLICY_BODY_CONF_SPACEID),
    C2B("POST", "blogposts", WRITE, S_BODY, POLICY_BODY_CONF_SPACEID),
    C2B("POST", "whiteboards", WRITE, S_BODY, POLICY_BODY_CONF_SPACEID),
    C2B("POST", "folders", WRITE, S_BODY, POLICY_BODY_CONF_SPACEID),
    C2B("POST", "databases", WRITE, S_BODY, POLICY_BODY_CONF_SPACEID),
    C2B("POST", "custom-content", WRITE, S_BODY, POLICY_BODY_CONF_SPACEID),
    C2B("POST", "footer-comments", COMMENT, S_BODY, POLICY_BODY_CONF_CONTAINER),
    C2B("POST", "inline-comments", COMMENT, S_BODY, POLICY_BODY_CONF_CONTAINER),
    C2("GET", "pages/{content}", READ, S_PATH),
    C2("GET", "pages/{content}/**", READ, S_PATH),
    C2B("PUT", "pages/{content}", WRITE, S_PATH, POLICY_BODY_CONF_EDIT),
    C2("PUT", "pages/{content}/title", WRITE, S_PATH),
    C2("DELETE", "pages/{content}", DEL, S_PATH),
    C2("POST", "pages/{content}/properties", WRITE, S_PATH),
    C2("PUT", "pages/{content}/properties/*", WRITE, S_PATH),
    C2("DELETE", "pages/{content}/properties/*", DEL, S_PATH),
    C2("GET", "blogposts/{content}", READ, S_PATH),
    C2("GET", "blogposts/{content}/**", READ, S_PATH),
    C2B("PUT", "blogposts/{content}", WRITE, S_PATH, POLICY_BODY_CONF_EDIT),
    C2("DELETE", "blogposts/{content}", DEL, S_PATH),
    C2("POST", "blogposts/{content}/properties", WRITE, S_PATH),
    C2("PUT", "blogposts/{content}/properties/*", WRITE, S_PATH),
    C2("DELETE", "blogposts/{content}/properties/*", DEL, S_PATH),
    C2("GET", "footer-comments/{content}", READ, S_PATH),
    C2("GET", "footer-comments/{content}/**", READ, S_PATH),
    C2("PUT", "footer-comments/{content}", COMMENT, S_PATH),
    C2("DELETE", "footer-comments/{content}", DEL, S_PATH),
    C2("GET", "inline-comments/{content}", READ, S_PATH),
    C2("GET", "inline-comments/{content}/**", READ, S_PATH),
    C2("PUT", "inline-comments/{content}", COMMENT, S_PATH),
    C2("DELETE", "inline-comments/{content}", DEL, S_PATH),
    C2("GET", "whiteboards/{content}", READ, S_PATH),
    C2("GET", "whiteboards/{content}/**", READ, S_PATH),
    C2("DELETE", "whiteboards/{content}", DEL, S_PATH),
    C2("GET", "folders/{content}", READ, S_PATH),
    C2("GET", "folders/{content}/**", READ, S_PATH),
    C2("DELETE", "folders/{content}", DEL, S_PATH),
    C2("GET", "databases/{content}", READ, S_PATH),
    C2("GET", "databases/{content}/**", READ, S_PATH),
    C2("DELETE", "databases/{content}", DEL, S_PATH),
    C2("GET", "attachments/*", READ, S_UNDET), /* "att123" ids: no lookup */
    C2("GET", "attachments/*/**", READ, S_UNDET),
    C2("DELETE", "attachments/*", DEL, S_UNDET),
    C2("GET", "custom-content/{content}", READ, S_PATH),
    C2("GET", "custom-content/{content}/**", READ, S_PATH),
    C2("PUT", "custom-content/{content}", WRITE, S_PATH),
    C2("DELETE", "custom-content/{content}", DEL, S_PATH),
    C2("GET", "space-permissions/**", READ, S_NONE),
    C2("GET", "admin-key", ADMIN, S_NONE),
    C2("POST", "admin-key", ADMIN, S_NONE),
    C2("DELETE", "admin-key", ADMIN, S_NONE),
};

static const char *const class_names[POLICY_NCLASSES] = {
    [POLICY_READ] = "read",   [POLICY_COMMENT] = "comment", [POLICY_TRANSITION] = "transition",
    [POLICY_WRITE] = "write", [POLICY_DELETE] = "delete",   [POLICY_ADMIN] = "admin",
};

const char *policy_class_name(enum policy_class c)
{
    return (unsigned)c < POLICY_NCLASSES ? class_names[c] : "?";
}

const char *policy_scope_src_name(enum policy_scope_src s)
{
    switch (s) {
    case POLICY_SCOPE_NONE:
        return "none needed (site-wide)";
    case POLICY_SCOPE_PATH:
        return "path";
    case POLICY_SCOPE_BODY:
        return "request body";
    case POLICY_SCOPE_QUERY_JQL:
        return "JQL in the query string (narrowed)";
    case POLICY_SCOPE_BODY_JQL:
        return "JQL in the JSON body (narrowed)";
    case POLICY_SCOPE_QUERY_CQL:
        return "CQL in the query string (narrowed)";
    case POLICY_SCOPE_QUERY_SPACE:
        return "spaceKey in the query string";
    case POLICY_SCOPE_UNDETERMINABLE:
        return "undeterminable";
    }
    return "?";
}

const char *policy_product_name(enum policy_product p)
{
    return p == POLICY_PRODUCT_CONFLUENCE ? "confluence" : "jira";
}

const char *policy_lookup_name(enum policy_lookup l)
{
    switch (l) {
    case POLICY_LOOKUP_NONE:
        return "none";
    case POLICY_LOOKUP_ISSUE:
        return "issue id";
    case POLICY_LOOKUP_PROJECT:
        return "project id";
    case POLICY_LOOKUP_CONTENT:
        return "content id";
    case POLICY_LOOKUP_SPACE:
        return "space id";
    }
    return "?";
}

/* ------------------------------------------------------------ paths */

struct segs {
    size_t n;
    char s[POLICY_MAX_SEGMENTS][POLICY_MAX_SEGMENT + 1];
};

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * Split the path (up to '?' or '#') into decoded segments. -1 for anything
 * an upstream could read differently from us: no leading '/', empty
 * segments ("//"), "." or "..", ';' (matrix parameters), '\', a
 * percent-encoded '/', '\', ';' or control byte, bad escapes, too deep.
 * One trailing '/' is ignored.
 */
static int split_path(const char *path, size_t len, struct segs *sg)
{
    size_t end = 0;

    while (end < len && path[end] != '?' && path[end] != '#')
        end++;
    sg->n = 0;
    if (end == 0 || path[0] != '/')
        return -1;
    if (end == 1)
        return 0;
    size_t i = 1;
    if (path[end - 1] == '/')
        end--;
    while (i <= end) {
        size_t j = i, o = 0;
        if (sg->n == POLICY_MAX_SEGMENTS)
            return -1;
        char *out = sg->s[sg->n];
        while (j < end && path[j] != '/') {
            unsigned char ch = (unsigned char)path[j];
            if (ch == '%') {
                if (j + 2 >= end)
                    return -1;
                int h1 = hexval(path[j + 1]), h2 = hexval(path[j + 2]);
                if (h1 < 0 || h2 < 0)
                    return -1;
                ch = (unsigned char)(h1 * 16 + h2);
                j += 2;
                if (ch == '/' || ch == '%')
                    return -1;
            }
            if (ch == ';' || ch == '\\' || ch < 0x20 || ch == 0x7f)
                return -1;
            if (o == POLICY_MAX_SEGMENT)
                return -1;
            out[o++] = (char)ch;
            j++;
        }
        out[o] = '\0';
        if (o == 0 || strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
            return -1;
        sg->n++;
        i = j + 1;
    }
    return 0;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

static bool is_alpha(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

static bool is_alnum_(char ch)
{
    return is_alpha(ch) || (ch >= '0' && ch <= '9') || ch == '_';
}

/* "OPS-12" -> "OPS" (upper-cased) into key; false when s is not an issue key. */
static bool issue_key_project(const char *s, char *key)
{
    const char *dash = strrchr(s, '-');
    size_t n;
    if (!dash || dash == s || !all_digits(dash + 1) || !is_alpha(s[0]))
        return false;
    n = (size_t)(dash - s);
    if (n > POLICY_MAX_KEY)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum_(s[i]))
            return false;
        key[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 'a' + 'A') : s[i];
    }
    key[n] = '\0';
    return true;
}

static bool project_key_ok(const char *s)
{
    if (!is_alpha(s[0]) || strlen(s) > POLICY_MAX_KEY)
        return false;
    for (; *s; s++) {
        if (!is_alnum_(*s))
            return false;
    }
    return true;
}

static bool space_key_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > POLICY_MAX_KEY)
        return false;
    if (s[0] == '~') {
        if (n == 1)
            return false;
        for (size_t i = 1; i < n; i++) {
            if (!(is_alnum_(s[i]) || s[i] == '-' || s[i] == ':'))
                return false;
        }
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_alnum_(s[i]) || s[i] == '_')
            return false;
    }
    return true;
}

static void upcase(char *s)
{
    for (; *s; s++) {
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
    }
}

/* One capture: does seg fit, and what scope does it name. */
static bool capture(const char *tok, const char *seg, struct policy_op *op)
{
    char key[POLICY_MAX_KEY + 1];
    bool digits = all_digits(seg) && strlen(seg) <= 19;

    if (strcmp(tok, "{issue}") == 0) {
        if (digits) {
            snprintf(op->key, sizeof(op->key), "%s", seg);
            op->lookup = POLICY_LOOKUP_ISSUE;
            return true;
        }
        if (!issue_key_project(seg, key))
            return false;
        snprintf(op->key, sizeof(op->key), "%s", key);
        op->lookup = POLICY_LOOKUP_NONE;
        return true;
    }
    if (strcmp(tok, "{project}") == 0) {
        if (digits) {
            snprintf(op->key, sizeof(op->key), "%s", seg);
            op->lookup = POLICY_LOOKUP_PROJECT;
            return true;
        }
        if (!project_key_ok(seg))
            return false;
        snprintf(op->key, sizeof(op->key), "%s", seg);
        upcase(op->key);
        op->lookup = POLICY_LOOKUP_NONE;
        return true;
    }
    if (strcmp(tok, "{content}") == 0 || strcmp(tok, "{spaceid}") == 0) {
        if (!digits)
            return false;
        snprintf(op->key, sizeof(op->key), "%s", seg);
        op->lookup = tok[1] == 'c' ? POLICY_LOOKUP_CONTENT : POLICY_LOOKUP_SPACE;
        return true;
    }
    if (strcmp(tok, "{spacekey}") == 0) {
        if (!space_key_ok(seg))
            return false;
        snprintf(op->key, sizeof(op->key), "%s", seg);
        op->lookup = POLICY_LOOKUP_NONE;
        return true;
    }
    return false;
}

/* Does the pattern match segments [from, n)? Captures go into *op. */
static bool pattern_match(const char *pattern, const struct segs *sg, size_t from,
                          struct policy_op *op)
{
    const char *p = pattern;
    size_t i = from;
    bool captured = false;

    op->key[0] = '\0';
    op->lookup = POLICY_LOOKUP_NONE;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t tl = slash ? (size_t)(slash - p) : strlen(p);
        if (tl == 2 && p[0] == '*' && p[1] == '*')
            return true;
        if (i >= sg->n)
            return false;
        const char *seg = sg->s[i];
        if (p[0] == '{') {
            char tok[32];
            if (tl >= sizeof(tok))
                return false;
            memcpy(tok, p, tl);
            tok[tl] = '\0';
            if (captured) {
                /* Only the first capture names the scope; later ones just have to fit. */
                struct policy_op tmp = *op;
                if (!capture(tok, seg, &tmp))
                    return false;
            } else if (!capture(tok, seg, op)) {
                return false;
            }
            captured = true;
        } else if (!(tl == 1 && p[0] == '*') && (strncasecmp(p, seg, tl) != 0 || seg[tl] != '\0')) {
            return false; /* a literal, matched case-insensitively */
        }
        i++;
        if (!slash)
            break;
        p = slash + 1;
    }
    return i == sg->n;
}

static bool seg_is(const struct segs *sg, size_t i, const char *lit)
{
    return i < sg->n && strcasecmp(sg->s[i], lit) == 0;
}

/* Does the query string (after '?') name a jql or cql parameter (percent-decoded names)? */
static bool query_has_param(const char *path, size_t len, const char *name)
{
    const char *q = memchr(path, '?', len);
    if (!q)
        return false;
    size_t i = (size_t)(q - path) + 1, nl = strlen(name);
    while (i < len) {
        size_t j = i, o = 0;
        char dec[8];
        while (j < len && path[j] != '&' && path[j] != ';' && path[j] != '=') {
            char ch = path[j];
            if (ch == '%' && j + 2 < len && hexval(path[j + 1]) >= 0 && hexval(path[j + 2]) >= 0) {
                ch = (char)(hexval(path[j + 1]) * 16 + hexval(path[j + 2]));
                j += 2;
            }
            if (o < sizeof(dec))
                dec[o] = ch;
            o++;
            j++;
        }
        if (o == nl && memcmp(dec, name, nl) == 0)
            return true;
        while (j < len && path[j] != '&' && path[j] != ';')
            j++;
        i = j + 1;
    }
    return false;
}

void policy_classify(const char *method, const char *path, size_t path_len, struct policy_op *op)
{
    struct segs segs; /* about 8 KiB: on the stack, this runs for every request */
    struct segs *sg = &segs;
    enum policy_api api;
    size_t from = 0;
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    memset(op, 0, sizeof(*op));
    op->rule = "(unknown)";
    op->product = POLICY_PRODUCT_JIRA;
    op->query_names_query =
        query_has_param(path, path_len, "jql") || query_has_param(path, path_len, "cql");
    if (split_path(path, path_len, sg) < 0) {
        op->cls = POLICY_ADMIN;
        op->src = POLICY_SCOPE_UNDETERMINABLE;
        op->rule = "(path refused: encoded separators, dot segments or matrix parameters)";
        if (path_len >= 6 && strncasecmp(path, "/wiki/", 6) == 0)
            op->product = POLICY_PRODUCT_CONFLUENCE;
        return;
    }
    if (seg_is(sg, 0, "rest") && seg_is(sg, 1, "api") &&
        (seg_is(sg, 2, "2") || seg_is(sg, 2, "3") || seg_is(sg, 2, "latest"))) {
        api = API_JIRA;
        from = 3;
    } else if (seg_is(sg, 0, "rest") && seg_is(sg, 1, "agile") &&
               (seg_is(sg, 2, "1.0") || seg_is(sg, 2, "latest"))) {
        api = API_AGILE;
        from = 3;
    } else if (seg_is(sg, 0, "rest") && seg_is(sg, 1, "servicedeskapi")) {
        api = API_JSM;
        from = 2;
    } else if (seg_is(sg, 0, "wiki") && seg_is(sg, 1, "rest") && seg_is(sg, 2, "api")) {
        api = API_CONF1;
        from = 3;
    } else if (seg_is(sg, 0, "wiki") && seg_is(sg, 1, "api") && seg_is(sg, 2, "v2")) {
        api = API_CONF2;
        from = 3;
    } else if (seg_is(sg, 0, "wiki")) {
        api = API_OTHER_CONF;
    } else {
        api = API_OTHER_JIRA;
    }
    if (api == API_CONF1 || api == API_CONF2 || api == API_OTHER_CONF)
        op->product = POLICY_PRODUCT_CONFLUENCE;

    for (size_t r = 0; r < sizeof(policy_rules) / sizeof(policy_rules[0]); r++) {
        const struct policy_rule *ru = &policy_rules[r];
        if (ru->api != api)
            continue;
        if (strcmp(ru->method, method) != 0 && !(get && strcmp(ru->method, "GET") == 0))
            continue;
        if (!pattern_match(ru->pattern, sg, from, op))
            continue;
        op->cls = ru->cls;
        op->src = ru->src;
        op->body = ru->body;
        op->rule = ru->pattern;
        if (op->src != POLICY_SCOPE_PATH) {
            op->key[0] = '\0';
            op->lookup = POLICY_LOOKUP_NONE;
        }
        return;
    }
    op->key[0] = '\0';
    op->lookup = POLICY_LOOKUP_NONE;
    if (get) {
        op->cls = POLICY_READ;
        op->src = POLICY_SCOPE_UNDETERMINABLE;
    } else if (strcmp(method, "OPTIONS") == 0) {
        op->cls = POLICY_READ;
        op->src = POLICY_SCOPE_NONE;
    } else {
        op->cls = POLICY_ADMIN;
        op->src = POLICY_SCOPE_UNDETERMINABLE;
    }
}

/* ------------------------------------------------------------ verdicts */

static void deny(struct policy_decision *d, const char *scope, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void deny(struct policy_decision *d, const char *scope, const char *fmt, ...)
{
    va_list ap;
    d->verdict = POLICY_DENY;
    snprintf(d->scope, sizeof(d->scope), "%s", scope ? scope : "");
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
    va_end(ap);
}

static bool scoped_for(const struct config_policy *pol, enum policy_product p);

bool policy_scoped(const struct config_policy *pol, enum policy_product p)
{
    return scoped_for(pol, p);
}

static bool scoped_for(const struct config_policy *pol, enum policy_product p)
{
    if (!pol)
        return false;
    return p == POLICY_PRODUCT_CONFLUENCE ? pol->has_spaces : pol->has_projects;
}

static const char *pol_name(const struct config_policy *pol)
{
    return pol && pol->name ? pol->name : "full";
}

static bool key_listed(const struct config_policy *pol, enum policy_product p, const char *key)
{
    char *const *list = p == POLICY_PRODUCT_CONFLUENCE ? pol->spaces : pol->projects;
    size_t n = p == POLICY_PRODUCT_CONFLUENCE ? pol->nspaces : pol->nprojects;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(list[i], key) == 0)
            return true;
    }
    return false;
}

static const char *scope_noun(enum policy_product p)
{
    return p == POLICY_PRODUCT_CONFLUENCE ? "space" : "project";
}

void policy_check_key(const struct config_policy *pol, const struct policy_op *op, const char *key,
                      struct policy_decision *d)
{
    if (!scoped_for(pol, op->product) || key_listed(pol, op->product, key)) {
        d->verdict = POLICY_ALLOW;
        snprintf(d->scope, sizeof(d->scope), "%s", key);
        snprintf(d->reason, sizeof(d->reason), "%s %s is allowed by policy %s",
                 scope_noun(op->product), key, pol_name(pol));
        return;
    }
    deny(d, key, "policy %s does not cover %s %s", pol_name(pol), scope_noun(op->product), key);
}

void policy_decide(const struct config_policy *pol, const struct policy_op *op,
                   struct policy_decision *d)
{
    memset(d, 0, sizeof(*d));
    unsigned allow = pol ? pol->allow : POLICY_ALL_CLASSES;
    if (!(allow & POLICY_CLASS_BIT(op->cls))) {
        deny(d, op->lookup == POLICY_LOOKUP_NONE ? op->key : "",
             "policy %s does not allow %s operations", pol_name(pol), policy_class_name(op->cls));
        return;
    }
    if (!scoped_for(pol, op->product)) {
        d->verdict = POLICY_ALLOW;
        snprintf(d->reason, sizeof(d->reason), "class %s allowed; policy %s has no %s list",
                 policy_class_name(op->cls), pol_name(pol),
                 op->product == POLICY_PRODUCT_CONFLUENCE ? "spaces" : "projects");
        return;
    }
    switch (op->src) {
    case POLICY_SCOPE_NONE:
        d->verdict = POLICY_ALLOW;
        snprintf(d->reason, sizeof(d->reason), "class %s allowed; site-wide, no %s involved",
                 policy_class_name(op->cls), scope_noun(op->product));
        return;
    case POLICY_SCOPE_PATH:
        if (op->lookup != POLICY_LOOKUP_NONE) {
            d->verdict = POLICY_NEEDS_LOOKUP;
            d->lookup = op->lookup;
            snprintf(d->id, sizeof(d->id), "%s", op->key);
            snprintf(d->reason, sizeof(d->reason), "%s %s must be resolved to its %s",
                     policy_lookup_name(op->lookup), op->key, scope_noun(op->product));
            return;
        }
        policy_check_key(pol, op, op->key, d);
        return;
    case POLICY_SCOPE_BODY:
    case POLICY_SCOPE_BODY_JQL:
        if (op->src == POLICY_SCOPE_BODY_JQL && op->query_names_query) {
            deny(d, "",
                 "a jql parameter in the query string of a JSON-body search is not allowed "
                 "under policy %s (it would not be narrowed)",
                 pol_name(pol));
            return;
        }
        d->verdict = POLICY_NEEDS_BODY;
        snprintf(d->reason, sizeof(d->reason), "the %s is read from the request body",
                 scope_noun(op->product));
        return;
    case POLICY_SCOPE_QUERY_JQL:
    case POLICY_SCOPE_QUERY_CQL:
    case POLICY_SCOPE_QUERY_SPACE:
        d->verdict = POLICY_NARROW_QUERY;
        snprintf(d->reason, sizeof(d->reason), "the query string is narrowed to policy %s",
                 pol_name(pol));
        return;
    case POLICY_SCOPE_UNDETERMINABLE:
        break;
    }
    deny(d, "",
         "policy %s is limited to some %ss and the %s of this %s request cannot be determined "
         "(%s)",
         pol_name(pol), scope_noun(op->product), scope_noun(op->product),
         policy_class_name(op->cls), op->rule);
}

/* ------------------------------------------------------------ JQL / CQL */

static bool q_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static bool q_word(char ch)
{
    return is_alnum_(ch) || ch == '.' || (unsigned char)ch >= 0x80;
}

/*
 * Find the top-level ORDER BY of q (outside quoted strings and
 * parentheses). *where_end is where the condition ends, *order_start where
 * the ordering fields begin (both len when there is none). -1 with *why for
 * queries that cannot be narrowed safely.
 */
static int q_split(const char *q, size_t len, size_t *where_end, size_t *order_start,
                   const char **why)
{
    int depth = 0;
    char quote = 0;
    bool found = false;

    *where_end = *order_start = len;
    if (len > POLICY_MAX_QUERY) {
        *why = "the query is too long";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)q[i];
        if ((ch < 0x20 && !q_ws((char)ch)) || ch == 0x7f) {
            *why = "the query contains a control byte";
            return -1;
        }
        if (quote) {
            if (ch == '\\') {
                if (i + 1 >= len) {
                    *why = "the query ends inside a quoted string";
                    return -1;
                }
                i++;
                if ((unsigned char)q[i] < 0x20 || q[i] == 0x7f) {
                    *why = "the query contains a control byte";
                    return -1;
                }
            } else if (ch == (unsigned char)quote) {
                quote = 0;
            }
            continue;
        }
        if (ch == '"' || ch == '\'') {
            quote = (char)ch;
            continue;
        }
        if (ch == '\\') {
            *why = "a backslash outside a quoted string";
            return -1;
        }
        if ((ch == '-' && i + 1 < len && q[i + 1] == '-') ||
            (ch == '/' && i + 1 < len && (q[i + 1] == '*' || q[i + 1] == '/')) ||
            (ch == '*' && i + 1 < len && q[i + 1] == '/')) {
            *why = "the query contains a comment marker (--, /*, */ or //)";
            return -1;
        }
        if (ch == '(') {
            depth++;
            continue;
        }
        if (ch == ')') {
            if (--depth < 0) {
                *why = "unbalanced parentheses";
                return -1;
            }
            continue;
        }
        if ((ch == 'o' || ch == 'O') && (i == 0 || !q_word(q[i - 1])) && i + 5 <= len &&
            strncasecmp(q + i, "order", 5) == 0 && (i + 5 == len || !q_word(q[i + 5]))) {
            size_t j = i + 5;
            while (j < len && q_ws(q[j]))
                j++;
            if (j > i + 5 && j + 2 <= len && strncasecmp(q + j, "by", 2) == 0 &&
                (j + 2 == len || !q_word(q[j + 2]))) {
                if (depth != 0) {
                    *why = "ORDER BY inside parentheses";
                    return -1;
                }
                if (found) {
                    *why = "more than one ORDER BY";
                    return -1;
                }
                found = true;
                *where_end = i;
                *order_start = j + 2;
                i = j + 1;
            }
        }
        if (found && i >= *order_start && (ch == '(' || ch == ')')) {
            *why = "parentheses after ORDER BY";
            return -1;
        }
    }
    if (quote) {
        *why = "unbalanced quotes";
        return -1;
    }
    if (depth != 0) {
        *why = "unbalanced parentheses";
        return -1;
    }
    if (found) {
        for (size_t i = *order_start; i < len; i++) {
            if (q[i] == '(' || q[i] == ')') {
                *why = "parentheses after ORDER BY";
                return -1;
            }
        }
    }
    return 0;
}

static bool q_blank(const char *s, size_t a, size_t b)
{
    for (size_t i = a; i < b; i++) {
        if (!q_ws(s[i]))
            return false;
    }
    return true;
}

/* Trim white space of [a, b). */
static void q_trim(const char *s, size_t *a, size_t *b)
{
    while (*a < *b && q_ws(s[*a]))
        (*a)++;
    while (*b > *a && q_ws(s[*b - 1]))
        (*b)--;
}

static bool key_plain(const char *k)
{
    for (; *k; k++) {
        if (!is_alnum_(*k))
            return false;
    }
    return true;
}

static char *q_narrow(const char *field, const char *const *keys, size_t n, const char *q,
                      size_t len, const char **why)
{
    size_t where_end, order_start;
    if (n == 0) {
        *why = "the policy names no keys";
        return NULL;
    }
    if (q_split(q, len, &where_end, &order_start, why) < 0)
        return NULL;
    size_t wa = 0, wb = where_end, oa = order_start, ob = len;
    q_trim(q, &wa, &wb);
    q_trim(q, &oa, &ob);
    if (where_end < len && oa == ob) {
        *why = "ORDER BY without a field";
        return NULL;
    }
    size_t cap = strlen(field) + 16 + len + 32;
    for (size_t i = 0; i < n; i++)
        cap += strlen(keys[i]) + 4;
    char *out = xmalloc(cap);
    size_t o = (size_t)snprintf(out, cap, "%s in (", field);
    for (size_t i = 0; i < n; i++) {
        bool plain = key_plain(keys[i]);
        o += (size_t)snprintf(out + o, cap - o, "%s%s%s%s", i ? ", " : "", plain ? "" : "\"",
                              keys[i], plain ? "" : "\"");
    }
    o += (size_t)snprintf(out + o, cap - o, ")");
    if (!q_blank(q, wa, wb))
        o += (size_t)snprintf(out + o, cap - o, " AND (%.*s)", (int)(wb - wa), q + wa);
    if (where_end < len)
        o += (size_t)snprintf(out + o, cap - o, " ORDER BY %.*s", (int)(ob - oa), q + oa);
    return out;
}

char *policy_narrow_jql(const char *const *projects, size_t n, const char *jql, size_t len,
                        const char **why)
{
    return q_narrow("project", projects, n, jql, len, why);
}

char *policy_narrow_cql(const char *const *spaces, size_t n, const char *cql, size_t len,
                        const char **why)
{
    return q_narrow("space", spaces, n, cql, len, why);
}

/* ------------------------------------------------------------ query strings */

/* Decode a form-encoded component ('+' is a space, as Jira's servlet reads it). NULL if bad. */
static char *form_decode(const char *s, size_t len, size_t *out_len)
{
    char *out = xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            int h1 = i + 2 < len ? hexval(s[i + 1]) : -1;
            int h2 = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (h1 < 0 || h2 < 0) {
                free(out);
                return NULL;
            }
            ch = (char)(h1 * 16 + h2);
            i += 2;
        }
        out[o++] = ch;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

static void form_encode_append(char **buf, size_t *len, size_t *cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    if (*len + 3 * n + 2 > *cap) {
        *cap = *len + 3 * n + 64;
        *buf = xrealloc(*buf, *cap);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (is_alnum_((char)ch) || ch == '-' || ch == '.' || ch == '~') {
            (*buf)[(*len)++] = (char)ch;
        } else {
            (*buf)[(*len)++] = '%';
            (*buf)[(*len)++] = hex[ch >> 4];
            (*buf)[(*len)++] = hex[ch & 15];
        }
    }
    (*buf)[*len] = '\0';
}

static void raw_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 2 > *cap) {
        *cap = *len + n + 64;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

char *policy_narrow_query(const struct config_policy *pol, const struct policy_op *op,
                          const char *query, size_t len, struct policy_decision *d)
{
    const char *pname = op->src == POLICY_SCOPE_QUERY_JQL   ? "jql"
                        : op->src == POLICY_SCOPE_QUERY_CQL ? "cql"
                                                            : "spaceKey";
    char *out = xmalloc(len + 64);
    size_t olen = 0, ocap = len + 64;
    char *value = NULL;
    size_t vlen = 0;
    int seen = 0;
    const char *why = NULL;

    memset(d, 0, sizeof(*d));
    out[0] = '\0';
    if (memchr(query, ';', len)) {
        /* Some servers split parameters at ';' too: a second, unnarrowed jql could hide there. */
        deny(d, "", "a ';' in the query string of a narrowed search");
        goto fail;
    }
    for (size_t i = 0; i < len; i++) {
        /* A NUL would end the returned string before the narrowed parameter (fuzz_narrow). */
        if ((unsigned char)query[i] < 0x20 || query[i] == 0x7f) {
            deny(d, "", "a control byte in the query string of a narrowed search");
            goto fail;
        }
    }
    for (size_t i = 0; i <= len;) {
        size_t j = i;
        while (j < len && query[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(query + i, '=', j - i);
            size_t nl = eq ? (size_t)(eq - (query + i)) : j - i;
            size_t dn;
            char *name = form_decode(query + i, nl, &dn);
            if (!name) {
                deny(d, "", "the query string has a malformed percent escape");
                goto fail;
            }
            bool match = strlen(name) == dn && strcmp(name, pname) == 0;
            free(name);
            if (match) {
                if (++seen > 1) {
                    deny(d, "", "the query string gives %s more than once", pname);
                    goto fail;
                }
                value =
                    eq ? form_decode(eq + 1, (size_t)(query + j - (eq + 1)), &vlen) : xstrdup("");
                if (!value) {
                    deny(d, "", "the %s parameter has a malformed percent escape", pname);
                    goto fail;
                }
                if (strlen(value) != vlen) {
                    deny(d, "", "the %s parameter contains a NUL byte", pname);
                    goto fail;
                }
            } else {
                if (olen)
                    raw_append(&out, &olen, &ocap, "&", 1);
                raw_append(&out, &olen, &ocap, query + i, j - i);
            }
        }
        i = j + 1;
    }
    if (op->src == POLICY_SCOPE_QUERY_SPACE) {
        if (!value || !*value) {
            deny(d, "", "policy %s is limited to some spaces; give spaceKey=KEY", pol_name(pol));
            goto fail;
        }
        policy_check_key(pol, op, value, d);
        if (d->verdict != POLICY_ALLOW)
            goto fail;
        free(value);
        free(out);
        return xstrndup(query, len);
    }
    char *narrowed = op->src == POLICY_SCOPE_QUERY_JQL
                         ? policy_narrow_jql((const char *const *)pol->projects, pol->nprojects,
                                             value ? value : "", vlen, &why)
                         : policy_narrow_cql((const char *const *)pol->spaces, pol->nspaces,
                                             value ? value : "", vlen, &why);
    if (!narrowed) {
        deny(d, "", "the %s cannot be narrowed safely: %s",
             op->src == POLICY_SCOPE_QUERY_JQL ? "JQL" : "CQL", why);
        goto fail;
    }
    if (olen)
        raw_append(&out, &olen, &ocap, "&", 1);
    raw_append(&out, &olen, &ocap, pname, strlen(pname));
    raw_append(&out, &olen, &ocap, "=", 1);
    form_encode_append(&out, &olen, &ocap, narrowed);
    d->verdict = POLICY_ALLOW;
    snprintf(d->reason, sizeof(d->reason), "narrowed to: %.200s", narrowed);
    free(narrowed);
    free(value);
    return out;
fail:
    free(value);
    free(out);
    return NULL;
}

/* ------------------------------------------------------------ bodies */

static json_t *obj_get(json_t *o, const char *k)
{
    return json_is_object(o) ? json_object_get(o, k) : NULL;
}

/* A JSON string or integer id as decimal text into buf; false otherwise. */
static bool id_text(json_t *v, char *buf, size_t cap)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
        return true;
    }
    if (json_is_string(v) && all_digits(json_string_value(v)) &&
        strlen(json_string_value(v)) < cap && strlen(json_string_value(v)) <= 19) {
        snprintf(buf, cap, "%s", json_string_value(v));
        return true;
    }
    return false;
}

static void need_lookup(struct policy_decision *d, enum policy_lookup l, const char *id,
                        enum policy_product p)
{
    d->verdict = POLICY_NEEDS_LOOKUP;
    d->lookup = l;
    snprintf(d->id, sizeof(d->id), "%s", id);
    snprintf(d->reason, sizeof(d->reason), "%s %s in the body must be resolved to its %s",
             policy_lookup_name(l), id, scope_noun(p));
}

/* fields.project of one issue: key (checked) or id (lookup). */
static void body_issue_project(const struct config_policy *pol, const struct policy_op *op,
                               json_t *fields, bool allow_id, struct policy_decision *d)
{
    json_t *proj = obj_get(fields, "project");
    json_t *key = obj_get(proj, "key"), *id = obj_get(proj, "id");
    char buf[POLICY_MAX_KEY + 1];

    if (key && id) {
        deny(d, "", "fields.project gives both key and id; give one");
        return;
    }
    if (json_is_string(key)) {
        /* a longer key would be cut to a different (maybe listed) one in buf */
        if (json_string_length(key) > POLICY_MAX_KEY) {
            deny(d, "", "fields.project.key is not a project key");
            return;
        }
        snprintf(buf, sizeof(buf), "%s", json_string_value(key));
        if (!project_key_ok(buf)) {
            deny(d, "", "fields.project.key is not a project key");
            return;
        }
        upcase(buf);
        policy_check_key(pol, op, buf, d);
        return;
    }
    if (id && allow_id && id_text(id, buf, sizeof(buf))) {
        need_lookup(d, POLICY_LOOKUP_PROJECT, buf, op->product);
        return;
    }
    deny(d, "", "the body names no project (fields.project.key%s)",
         allow_id ? " or fields.project.id" : "; bulk creates need keys");
}

/* Does the JSON text nest arrays and objects at most POLICY_MAX_JSON_DEPTH deep? */
static bool json_depth_ok(const char *s, size_t len)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > POLICY_MAX_JSON_DEPTH)
                return false;
        } else if (ch == ']' || ch == '}') {
            depth--;
        }
    }
    return true;
}

void policy_apply_body(const struct config_policy *pol, const struct policy_op *op,
                       const char *body, size_t len, char **out, size_t *out_len,
                       struct policy_decision *d)
{
    json_error_t jerr;
    json_t *root;
    char buf[POLICY_MAX_KEY + 1];

    memset(d, 0, sizeof(*d));
    *out = NULL;
    *out_len = 0;
    if (len > POLICY_MAX_BODY) {
        deny(d, "", "the body is larger than %d bytes", POLICY_MAX_BODY);
        return;
    }
    if (!json_depth_ok(body, len)) {
        deny(d, "", "the body nests deeper than %d levels", POLICY_MAX_JSON_DEPTH);
        return;
    }
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        deny(d, "", "the body is not a JSON object the policy can read (%s)",
             root ? "not an object" : "invalid or duplicate keys");
        json_decref(root);
        return;
    }
    switch (op->body) {
    case POLICY_BODY_JIRA_ISSUE:
        if (obj_get(obj_get(root, "update"), "project")) {
            deny(d, "", "the body sets the project through \"update\"; use fields.project");
            break;
        }
        body_issue_project(pol, op, obj_get(root, "fields"), true, d);
        break;
    case POLICY_BODY_JIRA_BULK: {
        json_t *arr = obj_get(root, "issueUpdates");
        size_t i;
        json_t *it;
        if (!json_is_array(arr) || json_array_size(arr) == 0) {
            deny(d, "", "the body has no issueUpdates list");
            break;
        }
        json_array_foreach(arr, i, it)
        {
            body_issue_project(pol, op, obj_get(it, "fields"), false, d);
            if (d->verdict != POLICY_ALLOW)
                break;
        }
        break;
    }
    case POLICY_BODY_CONF_SPACEKEY: {
        json_t *key = obj_get(obj_get(root, "space"), "key");
        if (obj_get(root, "container")) {
            /* A comment's space is its container's, which is not checked here. */
            deny(d, "",
                 "content with a \"container\" (v1 comments) cannot be checked; use the v2 "
                 "footer-comments endpoint");
            break;
        }
        if (!json_is_string(key) || !space_key_ok(json_string_value(key))) {
            deny(d, "", "the body names no space (space.key)");
            break;
        }
        policy_check_key(pol, op, json_string_value(key), d);
        break;
    }
    case POLICY_BODY_CONF_SPACEID:
        if (!id_text(obj_get(root, "spaceId"), buf, sizeof(buf))) {
            deny(d, "", "the body names no space (spaceId)");
            break;
        }
        need_lookup(d, POLICY_LOOKUP_SPACE, buf, op->product);
        break;
    case POLICY_BODY_CONF_CONTAINER: {
        static const char *const keys[] = {"pageId", "blogPostId", "attachmentId",
                                           "customContentId", "parentCommentId"};
        int found = 0;
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            json_t *v = obj_get(root, keys[k]);
            if (!v)
                continue;
            if (found++ || !id_text(v, buf, sizeof(buf))) {
                found = 2;
                break;
            }
        }
        if (found != 1) {
            deny(d, "", "the body must name exactly one numeric container id (pageId, ...)");
            break;
        }
        need_lookup(d, POLICY_LOOKUP_CONTENT, buf, op->product);
        break;
    }
    case POLICY_BODY_CONF_EDIT: {
        /* An edit may name a space: it must be in scope too (no moving a page out). */
        json_t *key = obj_get(obj_get(root, "space"), "key"), *sid = obj_get(root, "spaceId");
        if (key && sid) {
            deny(d, "", "the body names both space.key and spaceId");
            break;
        }
        if (key) {
            if (!json_is_string(key) || !space_key_ok(json_string_value(key))) {
                deny(d, "", "space.key in the body is not a space key");
                break;
            }
            policy_check_key(pol, op, json_string_value(key), d);
            break;
        }
        if (sid) {
            if (!id_text(sid, buf, sizeof(buf))) {
                deny(d, "", "spaceId in the body is not a numeric id");
                break;
            }
            need_lookup(d, POLICY_LOOKUP_SPACE, buf, op->product);
            break;
        }
        d->verdict = POLICY_ALLOW;
        snprintf(d->reason, sizeof(d->reason), "the body names no other space");
        break;
    }
    case POLICY_BODY_JQL: {
        json_t *jql = obj_get(root, "jql");
        const char *why = NULL;
        if (jql && !json_is_string(jql)) {
            deny(d, "", "\"jql\" in the body is not a string");
            break;
        }
        const char *q = jql ? json_string_value(jql) : "";
        size_t qlen = jql ? json_string_length(jql) : 0;
        char *narrowed =
            policy_narrow_jql((const char *const *)pol->projects, pol->nprojects, q, qlen, &why);
        if (!narrowed) {
            deny(d, "", "the JQL cannot be narrowed safely: %s", why);
            break;
        }
        json_object_set_new(root, "jql", json_string(narrowed));
        char *dumped = json_dumps(root, JSON_COMPACT);
        if (!dumped) {
            free(narrowed);
            deny(d, "", "the body could not be rewritten");
            break;
        }
        *out = dumped;
        *out_len = strlen(dumped);
        d->verdict = POLICY_ALLOW;
        snprintf(d->reason, sizeof(d->reason), "narrowed to: %.200s", narrowed);
        free(narrowed);
        break;
    }
    case POLICY_BODY_NONE:
        deny(d, "", "no body rule for this endpoint");
        break;
    }
    json_decref(root);
}

/* ------------------------------------------------------------ lookups */

int policy_lookup_path(enum policy_lookup lookup, const char *id, char *buf, size_t cap)
{
    int n;
    if (!all_digits(id) || strlen(id) > 19)
        return -1;
    switch (lookup) {
    case POLICY_LOOKUP_ISSUE:
        n = snprintf(buf, cap, "/rest/api/3/issue/%s?fields=project", id);
        break;
    case POLICY_LOOKUP_PROJECT:
        n = snprintf(buf, cap, "/rest/api/3/project/%s", id);
        break;
    case POLICY_LOOKUP_CONTENT:
        n = snprintf(buf, cap, "/wiki/rest/api/content/%s?expand=space", id);
        break;
    case POLICY_LOOKUP_SPACE:
        n = snprintf(buf, cap, "/wiki/api/v2/spaces/%s", id);
        break;
    default:
        return -1;
    }
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int policy_lookup_parse(enum policy_lookup lookup, const char *body, size_t len, char *key,
                        size_t cap)
{
    json_error_t jerr;
    json_t *root, *v = NULL;
    int rc = -1;

    if (len > POLICY_MAX_LOOKUP_BODY)
        return -1;
    root = json_loadb(body, len, 0, &jerr);
    if (!root)
        return -1;
    switch (lookup) {
    case POLICY_LOOKUP_ISSUE:
        v = obj_get(obj_get(obj_get(root, "fields"), "project"), "key");
        break;
    case POLICY_LOOKUP_PROJECT:
    case POLICY_LOOKUP_SPACE:
        v = obj_get(root, "key");
        break;
    case POLICY_LOOKUP_CONTENT:
        v = obj_get(obj_get(root, "space"), "key");
        break;
    default:
        break;
    }
    if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < cap &&
        json_string_length(v) <= POLICY_MAX_KEY) {
        const char *s = json_string_value(v);
        bool ok = lookup == POLICY_LOOKUP_ISSUE || lookup == POLICY_LOOKUP_PROJECT
                      ? project_key_ok(s)
                      : space_key_ok(s);
        if (ok) {
            snprintf(key, cap, "%s", s);
            if (lookup == POLICY_LOOKUP_ISSUE || lookup == POLICY_LOOKUP_PROJECT)
                upcase(key);
            rc = 0;
        }
    }
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------ cache */

struct policy_cache_entry {
    char site[128];
    enum policy_lookup lookup;
    char id[POLICY_MAX_KEY + 1];
    char key[POLICY_MAX_KEY + 1];
    int64_t stored_ms;
};

struct policy_cache {
    struct policy_cache_entry *e;
    size_t n;
};

struct policy_cache *policy_cache_new(void)
{
    struct policy_cache *pc = xcalloc(1, sizeof(*pc));
    pc->e = xcalloc(POLICY_CACHE_MAX, sizeof(*pc->e));
    return pc;
}

void policy_cache_free(struct policy_cache *pc)
{
    if (!pc)
        return;
    free(pc->e);
    free(pc);
}

static struct policy_cache_entry *cache_find(struct policy_cache *pc, const char *site,
                                             enum policy_lookup lookup, const char *id)
{
    for (size_t i = 0; i < pc->n; i++) {
        struct policy_cache_entry *e = &pc->e[i];
        if (e->lookup == lookup && strcmp(e->id, id) == 0 && strcmp(e->site, site) == 0)
            return e;
    }
    return NULL;
}

bool policy_cache_get(struct policy_cache *pc, const char *site, enum policy_lookup lookup,
                      const char *id, int64_t now_ms, char *out, size_t cap)
{
    struct policy_cache_entry *e = cache_find(pc, site, lookup, id);
    if (!e || now_ms - e->stored_ms >= POLICY_CACHE_TTL_MS || now_ms < e->stored_ms)
        return false;
    snprintf(out, cap, "%s", e->key);
    return true;
}

void policy_cache_put(struct policy_cache *pc, const char *site, enum policy_lookup lookup,
                      const char *id, const char *key, int64_t now_ms)
{
    struct policy_cache_entry *e = cache_find(pc, site, lookup, id);
    if (!e) {
        if (pc->n < POLICY_CACHE_MAX) {
            e = &pc->e[pc->n++];
        } else {
            e = &pc->e[0];
            for (size_t i = 1; i < pc->n; i++) {
                if (pc->e[i].stored_ms < e->stored_ms)
                    e = &pc->e[i];
            }
        }
    }
    snprintf(e->site, sizeof(e->site), "%s", site);
    e->lookup = lookup;
    snprintf(e->id, sizeof(e->id), "%s", id);
    snprintf(e->key, sizeof(e->key), "%s", key);
    e->stored_ms = now_ms;
}

size_t policy_cache_size(const struct policy_cache *pc)
{
    return pc->n;
}
