/*
 * test_policy: the Atlassian operation classifier (one row per endpoint
 * sample from Atlassian's REST references, both products, every class,
 * every POST read, unknown and refused paths), policy verdicts, JQL/CQL
 * narrowing with hostile inputs that must never escape it, query and body
 * rewriting, lookup paths/answers and the bounded cache.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "policy.h"
#include "testlib.h"

/* ---- classifier ------------------------------------------------------- */

enum { J = POLICY_PRODUCT_JIRA, C = POLICY_PRODUCT_CONFLUENCE };
#define RD POLICY_READ
#define CM POLICY_COMMENT
#define TR POLICY_TRANSITION
#define WR POLICY_WRITE
#define DL POLICY_DELETE
#define AD POLICY_ADMIN
#define NONE POLICY_SCOPE_NONE
#define PATH POLICY_SCOPE_PATH
#define BODY POLICY_SCOPE_BODY
#define QJQL POLICY_SCOPE_QUERY_JQL
#define BJQL POLICY_SCOPE_BODY_JQL
#define QCQL POLICY_SCOPE_QUERY_CQL
#define QSP POLICY_SCOPE_QUERY_SPACE
#define UND POLICY_SCOPE_UNDETERMINABLE
#define LN POLICY_LOOKUP_NONE
#define LI POLICY_LOOKUP_ISSUE
#define LP POLICY_LOOKUP_PROJECT
#define LC POLICY_LOOKUP_CONTENT
#define LS POLICY_LOOKUP_SPACE

struct cls_row {
    const char *method;
    const char *path;
    int product;
    enum policy_class cls;
    enum policy_scope_src src;
    enum policy_lookup lookup;
    const char *key; /* for PATH */
};

static const struct cls_row cls_rows[] = {
    /* Jira searches: GET narrowed in the query, POST reads narrowed in the body */
    {"GET", "/rest/api/3/search?jql=project%3DOPS", J, RD, QJQL, LN, ""},
    {"GET", "/rest/api/2/search", J, RD, QJQL, LN, ""},
    {"POST", "/rest/api/2/search", J, RD, BJQL, LN, ""},
    {"POST", "/rest/api/3/search", J, RD, BJQL, LN, ""},
    {"GET", "/rest/api/3/search/jql?jql=a", J, RD, QJQL, LN, ""},
    {"POST", "/rest/api/3/search/jql", J, RD, BJQL, LN, ""},
    {"POST", "/rest/api/2/search/jql", J, RD, BJQL, LN, ""},
    {"POST", "/rest/api/3/search/approximate-count", J, RD, BJQL, LN, ""},
    {"POST", "/rest/api/latest/search", J, RD, BJQL, LN, ""},
    {"HEAD", "/rest/api/3/search/jql", J, RD, QJQL, LN, ""},
    /* other POST reads */
    {"POST", "/rest/api/3/jql/parse", J, RD, NONE, LN, ""},
    {"POST", "/rest/api/3/jql/parse?validation=strict", J, RD, NONE, LN, ""},
    {"POST", "/rest/api/3/jql/sanitize", J, RD, NONE, LN, ""},
    {"POST", "/rest/api/3/jql/match", J, RD, UND, LN, ""},
    {"POST", "/rest/api/3/jql/autocompletedata", J, RD, NONE, LN, ""},
    {"POST", "/rest/api/3/expression/eval", J, RD, UND, LN, ""},
    {"POST", "/rest/api/3/expression/evaluate", J, RD, UND, LN, ""},
    {"POST", "/rest/api/3/expression/analyse", J, RD, NONE, LN, ""},
    {"POST", "/rest/api/3/issue/bulkfetch", J, RD, UND, LN, ""},
    {"POST", "/rest/api/3/changelog/bulkfetch", J, RD, UND, LN, ""},
    {"POST", "/rest/api/3/worklog/list", J, RD, UND, LN, ""},
    {"POST", "/rest/api/3/comment/list", J, RD, UND, LN, ""},
    {"POST", "/rest/api/3/issue/watching", J, RD, UND, LN, ""},
    {"POST", "/rest/api/3/permissions/check", J, RD, NONE, LN, ""},
    {"POST", "/rest/api/3/permissions/project", J, RD, NONE, LN, ""},
    {"POST", "/rest/api/3/issue/OPS-1/changelog/list", J, RD, PATH, LN, "OPS"},
    {"POST", "/wiki/api/v2/users-bulk", C, RD, NONE, LN, ""},
    {"POST", "/wiki/api/v2/user/access/check-access-by-email", C, RD, NONE, LN, ""},
    {"POST", "/wiki/api/v2/content/convert-ids-to-types", C, RD, NONE, LN, ""},
    {"POST", "/wiki/rest/api/content/123/permission/check", C, RD, PATH, LC, "123"},
    {"POST", "/wiki/rest/api/contentbody/convert/view", C, RD, UND, LN, ""},
    /* site-wide reads */
    {"GET", "/rest/api/3/myself", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/2/myself", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/myself/preference/locale", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/2/serverInfo", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/serverinfo", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/field", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/field/search?type=custom", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/issuetype", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/issuetype/10001", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/priority", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/status", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/resolution", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/issueLinkType", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/configuration/timetracking", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/mypermissions?permissions=BROWSE_PROJECTS", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/user?accountId=5b10a", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/user/search?query=a", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/users/search", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/groups/picker", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/label", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/filter/my", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/dashboard", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/issue/createmeta", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/issue/createmeta/OPS/issuetypes", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/project", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/project/search", J, RD, NONE, LN, ""},
    {"GET", "/rest/api/3/attachment/meta", J, RD, NONE, LN, ""},
    {"OPTIONS", "/rest/api/3/issue/SEC-1", J, RD, NONE, LN, ""},
    /* issues: keys give the project, numeric ids need a lookup */
    {"GET", "/rest/api/3/issue/OPS-12", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/2/issue/ops-12", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/issue/OPS-12?expand=changelog", J, RD, PATH, LN, "OPS"},
    {"HEAD", "/rest/api/3/issue/OPS-12", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/issue/10099", J, RD, PATH, LI, "10099"},
    {"GET", "/rest/api/2/issue/10001/comment", J, RD, PATH, LI, "10001"},
    {"GET", "/rest/api/3/issue/OPS-12/", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/issue/OPS-12/transitions", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/issue/OPS-12/comment/10000", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/issue/OPS-12/worklog", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/issue/OPS-12/editmeta", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/issue/MY_PROJ2-7/watchers", J, RD, PATH, LN, "MY_PROJ2"},
    {"PUT", "/rest/api/3/issue/OPS-12", J, WR, PATH, LN, "OPS"},
    {"PUT", "/rest/api/2/issue/10001", J, WR, PATH, LI, "10001"},
    {"DELETE", "/rest/api/3/issue/OPS-12", J, DL, PATH, LN, "OPS"},
    {"DELETE", "/rest/api/3/issue/SEC-1?deleteSubtasks=true", J, DL, PATH, LN, "SEC"},
    {"POST", "/rest/api/3/issue/OPS-12/comment", J, CM, PATH, LN, "OPS"},
    {"POST", "/rest/api/2/issue/10001/comment", J, CM, PATH, LI, "10001"},
    {"PUT", "/rest/api/3/issue/OPS-12/comment/10010", J, CM, PATH, LN, "OPS"},
    {"DELETE", "/rest/api/3/issue/OPS-12/comment/10010", J, DL, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/issue/OPS-12/transitions", J, TR, PATH, LN, "OPS"},
    {"POST", "/rest/api/2/issue/10001/transitions", J, TR, PATH, LI, "10001"},
    {"PUT", "/rest/api/3/issue/OPS-12/assignee", J, WR, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/issue/OPS-12/worklog", J, WR, PATH, LN, "OPS"},
    {"PUT", "/rest/api/3/issue/OPS-12/worklog/1", J, WR, PATH, LN, "OPS"},
    {"DELETE", "/rest/api/3/issue/OPS-12/worklog/1", J, DL, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/issue/OPS-12/attachments", J, WR, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/issue/OPS-12/remotelink", J, WR, PATH, LN, "OPS"},
    {"DELETE", "/rest/api/3/issue/OPS-12/remotelink/5", J, DL, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/issue/OPS-12/watchers", J, WR, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/issue/OPS-12/votes", J, WR, PATH, LN, "OPS"},
    {"PUT", "/rest/api/3/issue/OPS-12/properties/x", J, WR, PATH, LN, "OPS"},
    {"DELETE", "/rest/api/3/issue/OPS-12/properties/x", J, DL, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/issue/OPS-12/notify", J, WR, PATH, LN, "OPS"},
    {"PUT", "/rest/api/3/issue/OPS-12/archive", J, AD, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/issue", J, WR, BODY, LN, ""},
    {"POST", "/rest/api/2/issue/", J, WR, BODY, LN, ""},
    {"POST", "/rest/api/3/issue/bulk", J, WR, BODY, LN, ""},
    {"GET", "/rest/api/3/issue/picker?query=x", J, RD, UND, LN, ""},
    {"POST", "/rest/api/3/issueLink", J, WR, UND, LN, ""},
    {"DELETE", "/rest/api/3/issueLink/10001", J, DL, UND, LN, ""},
    {"GET", "/rest/api/3/attachment/content/10001", J, RD, UND, LN, ""},
    {"DELETE", "/rest/api/3/attachment/10001", J, DL, UND, LN, ""},
    {"POST", "/rest/api/3/filter", J, WR, NONE, LN, ""},
    {"DELETE", "/rest/api/3/filter/10000", J, DL, NONE, LN, ""},
    /* projects */
    {"GET", "/rest/api/3/project/OPS", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/project/10000", J, RD, PATH, LP, "10000"},
    {"GET", "/rest/api/3/project/ops/statuses", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/api/3/project/OPS/versions", J, RD, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/project", J, AD, NONE, LN, ""},
    {"PUT", "/rest/api/3/project/OPS", J, AD, PATH, LN, "OPS"},
    {"DELETE", "/rest/api/3/project/OPS", J, AD, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/project/OPS/archive", J, AD, PATH, LN, "OPS"},
    {"PUT", "/rest/api/3/project/OPS/properties/p", J, AD, PATH, LN, "OPS"},
    {"POST", "/rest/api/3/version", J, AD, NONE, LN, ""},
    {"POST", "/rest/api/3/component", J, AD, NONE, LN, ""},
    /* administration */
    {"POST", "/rest/api/3/user", J, AD, NONE, LN, ""},
    {"DELETE", "/rest/api/3/user?accountId=x", J, AD, NONE, LN, ""},
    {"POST", "/rest/api/3/group", J, AD, NONE, LN, ""},
    {"POST", "/rest/api/3/group/user?groupId=1", J, AD, NONE, LN, ""},
    {"PUT", "/rest/api/3/application-properties/jira.title", J, AD, NONE, LN, ""},
    {"POST", "/rest/api/3/webhook", J, AD, NONE, LN, ""},
    {"DELETE", "/rest/api/3/webhook", J, AD, NONE, LN, ""},
    {"POST", "/rest/api/3/workflow", J, AD, NONE, LN, ""},
    {"POST", "/rest/api/3/workflowscheme", J, AD, NONE, LN, ""},
    {"POST", "/rest/api/3/permissionscheme", J, AD, NONE, LN, ""},
    {"POST", "/rest/api/3/field", J, AD, NONE, LN, ""},
    {"PUT", "/rest/api/3/settings/columns", J, AD, NONE, LN, ""},
    {"PUT", "/rest/api/3/app/field/customfield_1/value", J, AD, NONE, LN, ""},
    {"POST", "/rest/api/3/jql/pdcleaner", J, AD, NONE, LN, ""},
    /* unknown endpoints: non-GET -> admin, GET -> read with undeterminable scope */
    {"POST", "/rest/api/3/notificationscheme", J, AD, UND, LN, ""},
    {"PUT", "/rest/api/3/screens/1/tabs/2", J, AD, UND, LN, ""},
    {"DELETE", "/rest/api/3/issuesecurityschemes/1", J, AD, UND, LN, ""},
    {"POST", "/rest/api/3/brand-new-endpoint", J, AD, UND, LN, ""},
    {"PATCH", "/rest/api/3/issue/OPS-1", J, AD, UND, LN, ""},
    {"get", "/rest/api/3/issue/OPS-1", J, AD, UND, LN, ""},
    {"POST", "/rest/internal/2/whatever", J, AD, UND, LN, ""},
    {"POST", "/secure/QuickCreateIssue.jspa", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3/workflowscheme", J, RD, UND, LN, ""},
    {"GET", "/secure/attachment/10001/file.txt", J, RD, UND, LN, ""},
    {"GET", "/rest/api/3/issue/not_a_key", J, RD, UND, LN, ""},
    /* paths that could mean something else upstream: refused as admin */
    {"GET", "/rest/api/3/issue/OPS-1/..%2F..%2Fproject", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3/issue/OPS-1/../SEC-1", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3/issue/./SEC-1", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3//issue/SEC-1", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3/issue;x=1/SEC-1", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3/issue/SEC-1%3B", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3/issue/SEC-1%2", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3/issue\\SEC-1", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3/issue/%2e%2e/x", J, AD, UND, LN, ""},
    {"DELETE", "rest/api/3/issue/OPS-1", J, AD, UND, LN, ""},
    {"GET", "/rest/api/3/issue/%4FPS-1", J, RD, PATH, LN, "OPS"},
    /* Agile */
    {"GET", "/rest/agile/1.0/board", J, RD, NONE, LN, ""},
    {"GET", "/rest/agile/1.0/board/1", J, RD, NONE, LN, ""},
    {"GET", "/rest/agile/1.0/board/1/issue?jql=x", J, RD, UND, LN, ""},
    {"GET", "/rest/agile/1.0/board/1/backlog", J, RD, UND, LN, ""},
    {"GET", "/rest/agile/1.0/board/1/sprint", J, RD, NONE, LN, ""},
    {"GET", "/rest/agile/1.0/board/1/sprint/2/issue", J, RD, UND, LN, ""},
    {"GET", "/rest/agile/1.0/sprint/2", J, RD, NONE, LN, ""},
    {"GET", "/rest/agile/1.0/sprint/2/issue", J, RD, UND, LN, ""},
    {"POST", "/rest/agile/1.0/sprint", J, WR, UND, LN, ""},
    {"POST", "/rest/agile/1.0/sprint/2/issue", J, WR, UND, LN, ""},
    {"DELETE", "/rest/agile/1.0/sprint/2", J, DL, UND, LN, ""},
    {"GET", "/rest/agile/1.0/epic/OPS-5", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/agile/1.0/epic/OPS-5/issue", J, RD, UND, LN, ""},
    {"GET", "/rest/agile/1.0/issue/OPS-5", J, RD, PATH, LN, "OPS"},
    {"GET", "/rest/agile/1.0/issue/10005/estimation", J, RD, PATH, LI, "10005"},
    {"PUT", "/rest/agile/1.0/issue/OPS-5/estimation", J, WR, PATH, LN, "OPS"},
    {"PUT", "/rest/agile/1.0/issue/rank", J, WR, UND, LN, ""},
    {"POST", "/rest/agile/1.0/backlog/issue", J, WR, UND, LN, ""},
    {"POST", "/rest/agile/1.0/board", J, AD, NONE, LN, ""},
    {"DELETE", "/rest/agile/1.0/board/1", J, AD, NONE, LN, ""},
    {"POST", "/rest/agile/1.0/board/1/whatever", J, AD, UND, LN, ""},
    /* Service Management */
    {"GET", "/rest/servicedeskapi/info", J, RD, NONE, LN, ""},
    {"GET", "/rest/servicedeskapi/servicedesk", J, RD, NONE, LN, ""},
    {"GET", "/rest/servicedeskapi/servicedesk/1/queue/2/issue", J, RD, UND, LN, ""},
    {"GET", "/rest/servicedeskapi/request", J, RD, UND, LN, ""},
    {"POST", "/rest/servicedeskapi/request", J, WR, UND, LN, ""},
    {"GET", "/rest/servicedeskapi/request/SUP-3", J, RD, PATH, LN, "SUP"},
    {"GET", "/rest/servicedeskapi/request/SUP-3/comment", J, RD, PATH, LN, "SUP"},
    {"POST", "/rest/servicedeskapi/request/SUP-3/comment", J, CM, PATH, LN, "SUP"},
    {"POST", "/rest/servicedeskapi/request/10020/transition", J, TR, PATH, LI, "10020"},
    {"POST", "/rest/servicedeskapi/request/SUP-3/approval/4", J, WR, PATH, LN, "SUP"},
    {"POST", "/rest/servicedeskapi/customer", J, AD, NONE, LN, ""},
    {"POST", "/rest/servicedeskapi/organization", J, AD, NONE, LN, ""},
    {"POST", "/rest/servicedeskapi/servicedesk/1/customer", J, AD, NONE, LN, ""},
    /* Confluence v1 */
    {"GET", "/wiki/rest/api/user/current", C, RD, NONE, LN, ""},
    {"GET", "/wiki/rest/api/space", C, RD, NONE, LN, ""},
    {"GET", "/wiki/rest/api/space/ENG", C, RD, PATH, LN, "ENG"},
    {"GET", "/wiki/rest/api/space/ENG/content", C, RD, PATH, LN, "ENG"},
    {"GET", "/wiki/rest/api/space/~5b10ac8d82e05b22cc7d4ef5/content", C, RD, PATH, LN,
     "~5b10ac8d82e05b22cc7d4ef5"},
    {"POST", "/wiki/rest/api/space", C, AD, NONE, LN, ""},
    {"PUT", "/wiki/rest/api/space/ENG", C, AD, PATH, LN, "ENG"},
    {"DELETE", "/wiki/rest/api/space/ENG", C, AD, PATH, LN, "ENG"},
    {"POST", "/wiki/rest/api/space/ENG/permission", C, AD, PATH, LN, "ENG"},
    {"GET", "/wiki/rest/api/search?cql=type%3Dpage", C, RD, QCQL, LN, ""},
    {"GET", "/wiki/rest/api/content/search?cql=x", C, RD, QCQL, LN, ""},
    {"GET", "/wiki/rest/api/content?spaceKey=ENG&title=Home", C, RD, QSP, LN, ""},
    {"POST", "/wiki/rest/api/content", C, WR, BODY, LN, ""},
    {"GET", "/wiki/rest/api/content/12345", C, RD, PATH, LC, "12345"},
    {"GET", "/wiki/rest/api/content/12345?expand=body.storage", C, RD, PATH, LC, "12345"},
    {"GET", "/wiki/rest/api/content/12345/child/page", C, RD, PATH, LC, "12345"},
    {"GET", "/wiki/rest/api/content/12345/history", C, RD, PATH, LC, "12345"},
    {"PUT", "/wiki/rest/api/content/12345", C, WR, PATH, LC, "12345"},
    {"DELETE", "/wiki/rest/api/content/12345", C, DL, PATH, LC, "12345"},
    {"POST", "/wiki/rest/api/content/12345/child/attachment", C, WR, PATH, LC, "12345"},
    {"POST", "/wiki/rest/api/content/12345/label", C, WR, PATH, LC, "12345"},
    {"DELETE", "/wiki/rest/api/content/12345/label/foo", C, WR, PATH, LC, "12345"},
    {"PUT", "/wiki/rest/api/content/12345/property/k", C, WR, PATH, LC, "12345"},
    {"DELETE", "/wiki/rest/api/content/12345/property/k", C, DL, PATH, LC, "12345"},
    {"PUT", "/wiki/rest/api/content/12345/restriction", C, AD, PATH, LC, "12345"},
    {"POST", "/wiki/rest/api/content/12345/copy", C, WR, UND, LN, ""},
    {"PUT", "/wiki/rest/api/content/12345/move/append/999", C, WR, UND, LN, ""},
    {"GET", "/wiki/rest/api/content/notanid", C, RD, UND, LN, ""},
    {"POST", "/wiki/rest/api/audit", C, AD, NONE, LN, ""},
    {"POST", "/wiki/rest/api/group", C, AD, NONE, LN, ""},
    {"POST", "/wiki/rest/api/template", C, AD, UND, LN, ""},
    {"GET", "/wiki/download/attachments/12345/a.png", C, RD, UND, LN, ""},
    {"POST", "/wiki/rest/api/something-new", C, AD, UND, LN, ""},
    /* Confluence v2 */
    {"GET", "/wiki/api/v2/spaces", C, RD, NONE, LN, ""},
    {"GET", "/wiki/api/v2/spaces/98306", C, RD, PATH, LS, "98306"},
    {"GET", "/wiki/api/v2/spaces/98306/pages", C, RD, PATH, LS, "98306"},
    {"POST", "/wiki/api/v2/spaces", C, AD, NONE, LN, ""},
    {"DELETE", "/wiki/api/v2/spaces/98306", C, AD, PATH, LS, "98306"},
    {"GET", "/wiki/api/v2/pages", C, RD, UND, LN, ""},
    {"GET", "/wiki/api/v2/pages?space-id=98306", C, RD, UND, LN, ""},
    {"GET", "/wiki/api/v2/pages/65601", C, RD, PATH, LC, "65601"},
    {"GET", "/wiki/api/v2/pages/65601/footer-comments", C, RD, PATH, LC, "65601"},
    {"PUT", "/wiki/api/v2/pages/65601", C, WR, PATH, LC, "65601"},
    {"PUT", "/wiki/api/v2/pages/65601/title", C, WR, PATH, LC, "65601"},
    {"DELETE", "/wiki/api/v2/pages/65601", C, DL, PATH, LC, "65601"},
    {"POST", "/wiki/api/v2/pages", C, WR, BODY, LN, ""},
    {"POST", "/wiki/api/v2/blogposts", C, WR, BODY, LN, ""},
    {"GET", "/wiki/api/v2/blogposts/7", C, RD, PATH, LC, "7"},
    {"DELETE", "/wiki/api/v2/blogposts/7", C, DL, PATH, LC, "7"},
    {"POST", "/wiki/api/v2/footer-comments", C, CM, BODY, LN, ""},
    {"POST", "/wiki/api/v2/inline-comments", C, CM, BODY, LN, ""},
    {"PUT", "/wiki/api/v2/footer-comments/9", C, CM, PATH, LC, "9"},
    {"DELETE", "/wiki/api/v2/footer-comments/9", C, DL, PATH, LC, "9"},
    {"POST", "/wiki/api/v2/pages/65601/properties", C, WR, PATH, LC, "65601"},
    {"POST", "/wiki/api/v2/whiteboards", C, WR, BODY, LN, ""},
    {"POST", "/wiki/api/v2/folders", C, WR, BODY, LN, ""},
    {"GET", "/wiki/api/v2/attachments/att123", C, RD, UND, LN, ""},
    {"DELETE", "/wiki/api/v2/attachments/att123", C, DL, UND, LN, ""},
    {"GET", "/wiki/api/v2/tasks", C, RD, UND, LN, ""},
    {"PUT", "/wiki/api/v2/tasks/1", C, WR, UND, LN, ""},
    {"POST", "/wiki/api/v2/admin-key", C, AD, NONE, LN, ""},
    {"POST", "/wiki/api/v2/brand-new", C, AD, UND, LN, ""},
    {"PATCH", "/wiki/api/v2/pages/65601", C, AD, UND, LN, ""},
};

static void test_classifier(void)
{
    size_t n = sizeof(cls_rows) / sizeof(cls_rows[0]);
    CHECK_MSG(n >= 150, "only %zu classifier rows", n);
    for (size_t i = 0; i < n; i++) {
        const struct cls_row *r = &cls_rows[i];
        struct policy_op op;
        policy_classify(r->method, r->path, strlen(r->path), &op);
        CHECK_MSG(op.cls == r->cls, "%s %s: class %s, want %s", r->method, r->path,
                  policy_class_name(op.cls), policy_class_name(r->cls));
        CHECK_MSG(op.src == r->src, "%s %s: scope %s, want %s", r->method, r->path,
                  policy_scope_src_name(op.src), policy_scope_src_name(r->src));
        CHECK_MSG((int)op.product == r->product, "%s %s: product %s", r->method, r->path,
                  policy_product_name(op.product));
        if (r->src == PATH) {
            CHECK_MSG(op.lookup == r->lookup, "%s %s: lookup %s", r->method, r->path,
                      policy_lookup_name(op.lookup));
            CHECK_MSG(strcmp(op.key, r->key) == 0, "%s %s: key '%s', want '%s'", r->method, r->path,
                      op.key, r->key);
        }
    }
}

/* ---- verdicts ---------------------------------------------------------- */

static char *ops_sup[] = {"OPS", "SUP"};
static char *eng[] = {"ENG"};
static char *docs[] = {"DOCS"};

static const struct config_policy pol_full = {.name = "full", .allow = POLICY_ALL_CLASSES};
static const struct config_policy pol_ro = {.name = "read-only",
                                            .allow = POLICY_CLASS_BIT(POLICY_READ)};
static const struct config_policy pol_triage = {
    .name = "triage",
    .allow = POLICY_CLASS_BIT(POLICY_READ) | POLICY_CLASS_BIT(POLICY_COMMENT) |
             POLICY_CLASS_BIT(POLICY_TRANSITION),
    .projects = ops_sup,
    .nprojects = 2,
    .has_projects = true,
    .spaces = eng,
    .nspaces = 1,
    .has_spaces = true,
};
/* A listed key of the longest length kept (POLICY_MAX_KEY): a longer body key must not be cut to
 * it. */
#define K64 "KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK"
static char *k64[] = {K64};
static const struct config_policy pol_k64 = {
    .name = "k64",
    .allow = POLICY_ALL_CLASSES,
    .projects = k64,
    .nprojects = 1,
    .has_projects = true,
};
static const struct config_policy pol_docs = {
    .name = "docs-writer",
    .allow = POLICY_CLASS_BIT(POLICY_READ) | POLICY_CLASS_BIT(POLICY_WRITE),
    .spaces = docs,
    .nspaces = 1,
    .has_spaces = true,
};

/* Every admin-class sample above is refused by read-only (and by triage). */
static void test_admin_refused(void)
{
    int nadmin = 0;
    for (size_t i = 0; i < sizeof(cls_rows) / sizeof(cls_rows[0]); i++) {
        const struct cls_row *r = &cls_rows[i];
        struct policy_op op;
        struct policy_decision d;
        policy_classify(r->method, r->path, strlen(r->path), &op);
        if (op.cls != POLICY_ADMIN)
            continue;
        nadmin++;
        policy_decide(&pol_ro, &op, &d);
        CHECK_MSG(d.verdict == POLICY_DENY, "read-only allowed %s %s", r->method, r->path);
        policy_decide(&pol_triage, &op, &d);
        CHECK_MSG(d.verdict == POLICY_DENY, "triage allowed %s %s", r->method, r->path);
        policy_decide(&pol_full, &op, &d);
        CHECK_MSG(d.verdict == POLICY_ALLOW, "full refused %s %s", r->method, r->path);
    }
    CHECK(nadmin >= 40);
}

struct verdict_row {
    const struct config_policy *pol;
    const char *method;
    const char *path;
    enum policy_verdict verdict;
    const char *scope; /* d.scope, "" when not checked */
};

static const struct verdict_row verdict_rows[] = {
    {&pol_triage, "GET", "/rest/api/3/issue/OPS-1", POLICY_ALLOW, "OPS"},
    {&pol_triage, "GET", "/rest/api/3/issue/SEC-1", POLICY_DENY, "SEC"},
    {&pol_triage, "GET", "/rest/api/3/issue/sec-1", POLICY_DENY, "SEC"},
    {&pol_triage, "DELETE", "/rest/api/3/issue/OPS-1", POLICY_DENY, ""},
    {&pol_triage, "POST", "/rest/api/3/issue/OPS-1/comment", POLICY_ALLOW, "OPS"},
    {&pol_triage, "POST", "/rest/api/3/issue/SUP-9/transitions", POLICY_ALLOW, "SUP"},
    {&pol_triage, "POST", "/rest/api/3/issue/SEC-9/transitions", POLICY_DENY, "SEC"},
    {&pol_triage, "PUT", "/rest/api/3/issue/OPS-1", POLICY_DENY, ""},
    {&pol_triage, "GET", "/rest/api/3/issue/10099", POLICY_NEEDS_LOOKUP, ""},
    {&pol_triage, "POST", "/rest/api/3/issue", POLICY_DENY, ""}, /* write not allowed */
    {&pol_triage, "GET", "/rest/api/3/search?jql=x", POLICY_NARROW_QUERY, ""},
    {&pol_triage, "POST", "/rest/api/3/search/jql", POLICY_NEEDS_BODY, ""},
    {&pol_triage, "POST", "/rest/api/3/issue/bulkfetch", POLICY_DENY, ""},
    {&pol_triage, "GET", "/rest/agile/1.0/board/1/issue", POLICY_DENY, ""},
    {&pol_triage, "GET", "/rest/api/3/myself", POLICY_ALLOW, ""},
    {&pol_triage, "GET", "/rest/api/3/field", POLICY_ALLOW, ""},
    {&pol_triage, "GET", "/rest/api/3/unknown/thing", POLICY_DENY, ""},
    {&pol_triage, "GET", "/wiki/rest/api/content/5", POLICY_NEEDS_LOOKUP, ""},
    {&pol_triage, "GET", "/wiki/rest/api/space/ENG", POLICY_ALLOW, "ENG"},
    {&pol_triage, "GET", "/wiki/rest/api/space/DOCS", POLICY_DENY, "DOCS"},
    {&pol_docs, "GET", "/rest/api/3/issue/SEC-1", POLICY_ALLOW, ""}, /* no projects list */
    {&pol_docs, "DELETE", "/rest/api/3/issue/SEC-1", POLICY_DENY, ""},
    {&pol_docs, "PUT", "/wiki/api/v2/pages/1", POLICY_NEEDS_LOOKUP, ""},
    {&pol_docs, "POST", "/wiki/api/v2/pages", POLICY_NEEDS_BODY, ""},
    {&pol_docs, "POST", "/wiki/rest/api/content", POLICY_NEEDS_BODY, ""},
    {&pol_docs, "GET", "/wiki/rest/api/search?cql=x", POLICY_NARROW_QUERY, ""},
    {&pol_docs, "GET", "/wiki/api/v2/pages", POLICY_DENY, ""},
    {&pol_docs, "POST", "/wiki/api/v2/footer-comments", POLICY_DENY, ""}, /* comment class */
    {&pol_triage, "POST", "/rest/api/3/search/jql?jql=project%3DSEC", POLICY_DENY, ""},
    {&pol_triage, "POST", "/rest/api/3/search?%6Aql=x", POLICY_DENY, ""},
    {&pol_triage, "POST", "/rest/api/3/search?maxResults=5", POLICY_NEEDS_BODY, ""},
    {&pol_ro, "GET", "/rest/api/3/issue/SEC-1", POLICY_ALLOW, ""},
    {&pol_ro, "POST", "/rest/api/3/search", POLICY_ALLOW, ""},
    {&pol_ro, "POST", "/rest/api/3/issue/SEC-1/comment", POLICY_DENY, ""},
    {&pol_ro, "POST", "/rest/api/3/issue", POLICY_DENY, ""},
    {&pol_full, "DELETE", "/rest/api/3/issue/SEC-1", POLICY_ALLOW, ""},
    {NULL, "DELETE", "/rest/api/3/issue/SEC-1", POLICY_ALLOW, ""},
};

static void test_verdicts(void)
{
    for (size_t i = 0; i < sizeof(verdict_rows) / sizeof(verdict_rows[0]); i++) {
        const struct verdict_row *r = &verdict_rows[i];
        struct policy_op op;
        struct policy_decision d;
        policy_classify(r->method, r->path, strlen(r->path), &op);
        policy_decide(r->pol, &op, &d);
        CHECK_MSG(d.verdict == r->verdict, "%s %s under %s: verdict %d, want %d (%s)", r->method,
                  r->path, r->pol ? r->pol->name : "NULL", d.verdict, r->verdict, d.reason);
        if (*r->scope)
            CHECK_STR(d.scope, r->scope);
        if (d.verdict == POLICY_DENY)
            CHECK(d.reason[0] != '\0');
    }
    /* after a lookup */
    struct policy_op op;
    struct policy_decision d;
    policy_classify("GET", "/rest/api/3/issue/10099", 23, &op);
    policy_check_key(&pol_triage, &op, "SEC", &d);
    CHECK(d.verdict == POLICY_DENY);
    CHECK_STR(d.scope, "SEC");
    policy_check_key(&pol_triage, &op, "OPS", &d);
    CHECK(d.verdict == POLICY_ALLOW);
}

/* ---- JQL / CQL narrowing ---------------------------------------------- */

struct nar_row {
    const char *in;
    const char *out; /* NULL: must be refused */
};

static const struct nar_row jql_rows[] = {
    {"", "project in (OPS, SUP)"},
    {"   ", "project in (OPS, SUP)"},
    {"status = Open", "project in (OPS, SUP) AND (status = Open)"},
    {"assignee = currentUser() AND resolution = Unresolved",
     "project in (OPS, SUP) AND (assignee = currentUser() AND resolution = Unresolved)"},
    {"status = Open ORDER BY created DESC",
     "project in (OPS, SUP) AND (status = Open) ORDER BY created DESC"},
    {"status = Open order by created",
     "project in (OPS, SUP) AND (status = Open) ORDER BY created"},
    {"status = Open OrDeR   bY priority DESC, key ASC",
     "project in (OPS, SUP) AND (status = Open) ORDER BY priority DESC, key ASC"},
    {"ORDER BY created", "project in (OPS, SUP) ORDER BY created"},
    {"order by rank", "project in (OPS, SUP) ORDER BY rank"},
    {"summary ~ \"order by\" ORDER BY key",
     "project in (OPS, SUP) AND (summary ~ \"order by\") ORDER BY key"},
    {"summary ~ 'x ORDER BY y'", "project in (OPS, SUP) AND (summary ~ 'x ORDER BY y')"},
    {"summary ~ \"say \\\"hi\\\" order by\"",
     "project in (OPS, SUP) AND (summary ~ \"say \\\"hi\\\" order by\")"},
    {"project = OPS", "project in (OPS, SUP) AND (project = OPS)"},
    {"project = SECRET", "project in (OPS, SUP) AND (project = SECRET)"},
    {"(a = 1 OR b = 2) AND c = 3", "project in (OPS, SUP) AND ((a = 1 OR b = 2) AND c = 3)"},
    {"labels = ordering", "project in (OPS, SUP) AND (labels = ordering)"},
    {"recorder = x", "project in (OPS, SUP) AND (recorder = x)"},
    {"created >= -1d", "project in (OPS, SUP) AND (created >= -1d)"},
    {"summary ~ \"a--b /* c */\"", "project in (OPS, SUP) AND (summary ~ \"a--b /* c */\")"},
    {"status = Open\nORDER BY\tcreated",
     "project in (OPS, SUP) AND (status = Open) ORDER BY created"},
    {"cf[10010] = 5 ORDER BY cf[10010]",
     "project in (OPS, SUP) AND (cf[10010] = 5) ORDER BY cf[10010]"},
    {"text ~ \"über\"", "project in (OPS, SUP) AND (text ~ \"über\")"},
    /* hostile: must never escape */
    {") OR (project = SECRET", NULL},
    {"x = 1) OR (project = SECRET", NULL},
    {"x = 1 ) OR project = SECRET OR ( y = 2", NULL},
    {"summary ~ \"unbalanced", NULL},
    {"summary ~ 'unbalanced", NULL},
    {"summary ~ \"ends with backslash\\", NULL},
    {"x = 1 -- comment", NULL},
    {"x = 1 /* c */", NULL},
    {"x = 1 // c", NULL},
    {"x = 1 */", NULL},
    {"x = 1\x01", NULL},
    {"x = \"a\x00b\"", NULL}, /* the NUL ends the C string: "x = \"a": unbalanced */
    {"x = 1\x7f", NULL},
    {"x = a\\) OR (project = SECRET", NULL},
    {"(x = 1 ORDER BY key)", NULL},
    {"x = 1 ORDER BY key ORDER BY id", NULL},
    {"x = 1 ORDER BY", NULL},
    {"x = 1 ORDER BY key) OR (project = SECRET", NULL},
    {"x = 1 ORDER BY (key)", NULL},
    {"((x = 1)", NULL},
    {"x = 1))", NULL},
    {"summary ~ \"a\x02\"", NULL},
};

static const char *const jql_keys[] = {"OPS", "SUP"};

static void test_narrow(void)
{
    for (size_t i = 0; i < sizeof(jql_rows) / sizeof(jql_rows[0]); i++) {
        const char *why = NULL;
        char *got = policy_narrow_jql(jql_keys, 2, jql_rows[i].in, strlen(jql_rows[i].in), &why);
        if (jql_rows[i].out) {
            CHECK_MSG(got && strcmp(got, jql_rows[i].out) == 0, "narrow(%s) = %s (%s)",
                      jql_rows[i].in, got ? got : "NULL", why ? why : "");
        } else {
            CHECK_MSG(!got && why, "hostile JQL accepted: %s -> %s", jql_rows[i].in,
                      got ? got : "");
        }
        free(got);
    }
    /* an embedded NUL byte by length */
    {
        const char q[] = "x = 1\0 OR project = SECRET";
        const char *why = NULL;
        char *got = policy_narrow_jql(jql_keys, 2, q, sizeof(q) - 1, &why);
        CHECK(got == NULL);
        free(got);
    }
    /* CQL */
    const char *const sp[] = {"ENG"};
    const char *const sp2[] = {"ENG", "~abc-1"};
    const char *why = NULL;
    char *got = policy_narrow_cql(sp, 1, "type = page", 11, &why);
    CHECK_STR(got, "space in (ENG) AND (type = page)");
    free(got);
    got = policy_narrow_cql(sp2, 2, "text ~ \"x\" order by lastmodified desc", 37, &why);
    CHECK_STR(got, "space in (ENG, \"~abc-1\") AND (text ~ \"x\") ORDER BY lastmodified desc");
    free(got);
    got = policy_narrow_cql(sp, 1, ") OR (space = SECRET", 20, &why);
    CHECK(got == NULL);
    free(got);
    got = policy_narrow_cql(sp, 1, "", 0, &why);
    CHECK_STR(got, "space in (ENG)");
    free(got);
}

/* ---- query strings ---------------------------------------------------- */

struct q_row {
    const struct config_policy *pol;
    const char *path;
    const char *query;
    const char *out; /* NULL: refused */
};

static const struct q_row q_rows[] = {
    {&pol_triage, "/rest/api/3/search", "jql=status%3DOpen&maxResults=5",
     "maxResults=5&jql=project%20in%20%28OPS%2C%20SUP%29%20AND%20%28status%3DOpen%29"},
    {&pol_triage, "/rest/api/3/search", "", "jql=project%20in%20%28OPS%2C%20SUP%29"},
    {&pol_triage, "/rest/api/3/search", "startAt=0",
     "startAt=0&jql=project%20in%20%28OPS%2C%20SUP%29"},
    {&pol_triage, "/rest/api/3/search/jql", "jql=status+%3D+Open+order+by+key",
     "jql=project%20in%20%28OPS%2C%20SUP%29%20AND%20%28status%20%3D%20Open%29%20ORDER%20BY%"
     "20key"},
    {&pol_triage, "/rest/api/3/search", "%6Aql=x",
     "jql=project%20in%20%28OPS%2C%20SUP%29%20AND%20%28x%29"},
    {&pol_triage, "/rest/api/3/search", "jql=a&jql=b", NULL},
    {&pol_triage, "/rest/api/3/search", "x=1;jql=project%3DSEC&jql=a", NULL},
    {&pol_triage, "/rest/api/3/search", "jql=a;b", NULL},
    {&pol_triage, "/rest/api/3/search", "jql=%29%20OR%20%28project%3DSECRET", NULL},
    {&pol_triage, "/rest/api/3/search", "jql=%zz", NULL},
    {&pol_triage, "/rest/api/3/search", "jql=a%00b", NULL},
    {&pol_triage, "/wiki/rest/api/search", "cql=type%3Dpage&limit=5",
     "limit=5&cql=space%20in%20%28ENG%29%20AND%20%28type%3Dpage%29"},
    {&pol_triage, "/wiki/rest/api/search", "cql=%22x", NULL},
    {&pol_triage, "/wiki/rest/api/content", "spaceKey=ENG&title=Home", "spaceKey=ENG&title=Home"},
    {&pol_triage, "/wiki/rest/api/content", "spaceKey=DOCS", NULL},
    {&pol_triage, "/wiki/rest/api/content", "title=Home", NULL},
    {&pol_triage, "/wiki/rest/api/content", "spaceKey=ENG&spaceKey=DOCS", NULL},
    {&pol_triage, "/rest/api/3/search", "a=\x01&jql=x", NULL},
    {&pol_triage, "/wiki/rest/api/search", "limit=5\x7f&cql=x", NULL},
};

static void test_query(void)
{
    for (size_t i = 0; i < sizeof(q_rows) / sizeof(q_rows[0]); i++) {
        const struct q_row *r = &q_rows[i];
        struct policy_op op;
        struct policy_decision d;
        policy_classify("GET", r->path, strlen(r->path), &op);
        char *got = policy_narrow_query(r->pol, &op, r->query, strlen(r->query), &d);
        if (r->out) {
            CHECK_MSG(got && strcmp(got, r->out) == 0, "%s?%s -> %s (%s)", r->path, r->query,
                      got ? got : "NULL", d.reason);
            CHECK(d.verdict == POLICY_ALLOW);
        } else {
            CHECK_MSG(!got && d.verdict == POLICY_DENY, "%s?%s accepted: %s", r->path, r->query,
                      got ? got : "");
        }
        free(got);
    }
}

/* Query strings with a NUL byte (fuzz_narrow): the NUL would end the returned string before
 * the appended narrowed jql=, so an unnarrowed search went upstream. Always refused. */
static void test_query_nul(void)
{
    static const struct {
        const char *path, *query;
        size_t len;
    } rows[] = {
        {"/rest/api/3/search", "a=\0&jql=x", 9},
        {"/rest/api/3/search", "a=\0", 3},
        {"/rest/api/3/search", "fields text ~\0\0 \"=sum2ary", 25},
        {"/wiki/rest/api/search", "limit=5\0&cql=type%3Dpage", 24},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct policy_op op;
        struct policy_decision d;
        policy_classify("GET", rows[i].path, strlen(rows[i].path), &op);
        char *got = policy_narrow_query(&pol_triage, &op, rows[i].query, rows[i].len, &d);
        CHECK_MSG(!got && d.verdict == POLICY_DENY, "row %zu accepted: %s", i, got ? got : "");
        free(got);
    }
}

/* ---- bodies ----------------------------------------------------------- */

struct b_row {
    const struct config_policy *pol;
    const char *path;
    const char *body;
    enum policy_verdict verdict;
    const char *expect; /* ALLOW: rewritten body or NULL (unchanged); LOOKUP: the id */
};

static const struct b_row b_rows[] = {
    {&pol_triage, "/rest/api/3/search/jql", "{\"jql\":\"status = Open\",\"maxResults\":5}",
     POLICY_ALLOW, "{\"jql\":\"project in (OPS, SUP) AND (status = Open)\",\"maxResults\":5}"},
    {&pol_triage, "/rest/api/3/search", "{\"maxResults\":5}", POLICY_ALLOW,
     "{\"maxResults\":5,\"jql\":\"project in (OPS, SUP)\"}"},
    {&pol_triage, "/rest/api/3/search", "{\"jql\":\") OR (project = SECRET\"}", POLICY_DENY, NULL},
    {&pol_triage, "/rest/api/3/search", "{\"jql\":\"a\",\"jql\":\"b\"}", POLICY_DENY, NULL},
    {&pol_triage, "/rest/api/3/search", "{\"jql\":5}", POLICY_DENY, NULL},
    {&pol_triage, "/rest/api/3/search", "[1]", POLICY_DENY, NULL},
    {&pol_triage, "/rest/api/3/search", "{\"jql\":\"a\"} trailing", POLICY_DENY, NULL},
    {&pol_triage, "/rest/api/3/search", "{\"jql\":\"a\\u0000b\"}", POLICY_DENY, NULL},
    {&pol_full, "/rest/api/3/issue", "{\"fields\":{\"project\":{\"key\":\"SEC\"}}}", POLICY_ALLOW,
     NULL},
    {&pol_triage, "/rest/api/3/issue", "{\"fields\":{\"project\":{\"key\":\"OPS\"}}}", POLICY_ALLOW,
     NULL},
    {&pol_triage, "/rest/api/3/issue", "{\"fields\":{\"project\":{\"key\":\"SEC\"}}}", POLICY_DENY,
     NULL},
    {&pol_triage, "/rest/api/3/issue", "{\"fields\":{\"project\":{\"key\":\"sec\"}}}", POLICY_DENY,
     NULL},
    {&pol_triage, "/rest/api/3/issue", "{\"fields\":{\"project\":{\"id\":\"10002\"}}}",
     POLICY_NEEDS_LOOKUP, "10002"},
    {&pol_triage, "/rest/api/3/issue", "{\"fields\":{\"project\":{\"id\":10002}}}",
     POLICY_NEEDS_LOOKUP, "10002"},
    {&pol_triage, "/rest/api/3/issue",
     "{\"fields\":{\"project\":{\"key\":\"OPS\",\"id\":\"10002\"}}}", POLICY_DENY, NULL},
    {&pol_triage, "/rest/api/3/issue", "{\"fields\":{}}", POLICY_DENY, NULL},
    {&pol_triage, "/rest/api/3/issue",
     "{\"fields\":{\"project\":{\"key\":\"OPS\"}},\"update\":{\"project\":[{\"set\":{\"key\":"
     "\"SEC\"}}]}}",
     POLICY_DENY, NULL},
    {&pol_docs, "/wiki/rest/api/content",
     "{\"type\":\"comment\",\"space\":{\"key\":\"DOCS\"},\"container\":{\"id\":\"65602\"}}",
     POLICY_DENY, NULL},
    {&pol_triage, "/rest/api/3/issue/bulk",
     "{\"issueUpdates\":[{\"fields\":{\"project\":{\"key\":\"OPS\"}}},{\"fields\":{\"project\":{"
     "\"key\":\"SEC\"}}}]}",
     POLICY_DENY, NULL},
    {&pol_triage, "/rest/api/3/issue/bulk",
     "{\"issueUpdates\":[{\"fields\":{\"project\":{\"key\":\"OPS\"}}},{\"fields\":{\"project\":{"
     "\"key\":\"SUP\"}}}]}",
     POLICY_ALLOW, NULL},
    {&pol_docs, "/wiki/rest/api/content", "{\"type\":\"page\",\"space\":{\"key\":\"DOCS\"}}",
     POLICY_ALLOW, NULL},
    {&pol_docs, "/wiki/rest/api/content", "{\"type\":\"page\",\"space\":{\"key\":\"ENG\"}}",
     POLICY_DENY, NULL},
    {&pol_docs, "/wiki/rest/api/content", "{\"type\":\"page\"}", POLICY_DENY, NULL},
    {&pol_docs, "/wiki/api/v2/pages", "{\"spaceId\":\"98306\",\"title\":\"x\"}",
     POLICY_NEEDS_LOOKUP, "98306"},
    {&pol_docs, "/wiki/api/v2/pages", "{\"spaceId\":\"DOCS\"}", POLICY_DENY, NULL},
    {&pol_docs, "/wiki/rest/api/content/65601",
     "{\"type\":\"page\",\"title\":\"t\",\"version\":{\"number\":2}}", POLICY_ALLOW, NULL},
    {&pol_docs, "/wiki/rest/api/content/65601",
     "{\"type\":\"page\",\"space\":{\"key\":\"DOCS\"},\"version\":{\"number\":2}}", POLICY_ALLOW,
     NULL},
    {&pol_docs, "/wiki/rest/api/content/65601",
     "{\"type\":\"page\",\"space\":{\"key\":\"ENG\"},\"version\":{\"number\":2}}", POLICY_DENY,
     NULL},
    {&pol_docs, "/wiki/api/v2/pages/65601", "{\"spaceId\":\"98302\",\"title\":\"t\"}",
     POLICY_NEEDS_LOOKUP, "98302"},
    {&pol_triage, "/wiki/api/v2/footer-comments", "{\"pageId\":\"65601\"}", POLICY_NEEDS_LOOKUP,
     "65601"},
    {&pol_triage, "/wiki/api/v2/footer-comments", "{\"pageId\":\"1\",\"blogPostId\":\"2\"}",
     POLICY_DENY, NULL},
    {&pol_k64, "/rest/api/3/issue", "{\"fields\":{\"project\":{\"key\":\"" K64 "\"}}}",
     POLICY_ALLOW, NULL},
    {&pol_k64, "/rest/api/3/issue", "{\"fields\":{\"project\":{\"key\":\"" K64 "X\"}}}",
     POLICY_DENY, NULL},
    {&pol_k64, "/rest/api/3/issue/bulk",
     "{\"issueUpdates\":[{\"fields\":{\"project\":{\"key\":\"" K64 "SECRET\"}}}]}", POLICY_DENY,
     NULL},
};

static void test_bodies(void)
{
    for (size_t i = 0; i < sizeof(b_rows) / sizeof(b_rows[0]); i++) {
        const struct b_row *r = &b_rows[i];
        struct policy_op op;
        struct policy_decision d;
        char *out = NULL;
        size_t olen = 0;
        /* Paths ending in an id are edits (PUT); the others create or search (POST). */
        size_t pl = strlen(r->path);
        const char *method = r->path[pl - 1] >= '0' && r->path[pl - 1] <= '9' ? "PUT" : "POST";
        policy_classify(method, r->path, pl, &op);
        policy_apply_body(r->pol, &op, r->body, strlen(r->body), &out, &olen, &d);
        CHECK_MSG(d.verdict == r->verdict, "%s %s: verdict %d want %d (%s)", r->path, r->body,
                  d.verdict, r->verdict, d.reason);
        if (r->verdict == POLICY_ALLOW && r->expect)
            CHECK_MSG(out && strcmp(out, r->expect) == 0, "%s: body %s", r->path,
                      out ? out : "NULL");
        if (r->verdict == POLICY_ALLOW && !r->expect)
            CHECK(out == NULL);
        if (r->verdict == POLICY_NEEDS_LOOKUP)
            CHECK_STR(d.id, r->expect);
        free(out);
    }
}

/* POLICY_MAX_JSON_DEPTH was declared but not enforced (fuzz_policy_body): bodies nesting
 * deeper are refused, up to the limit they are read; brackets inside strings do not count. */
static void test_body_depth(void)
{
    static const struct {
        int depth;           /* nested arrays around the jql member's value */
        const char *padding; /* a string member with brackets, before it */
        enum policy_verdict verdict;
    } rows[] = {
        {POLICY_MAX_JSON_DEPTH - 1, "", POLICY_ALLOW}, /* + the outer object = the limit */
        {POLICY_MAX_JSON_DEPTH, "", POLICY_DENY},
        {2000, "", POLICY_DENY},
        {POLICY_MAX_JSON_DEPTH - 1, "[[[[{{{{\\\"[[[[", POLICY_ALLOW},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char body[8192];
        size_t n = (size_t)snprintf(body, sizeof(body), "{\"s\":\"%s\",\"x\":", rows[i].padding);
        for (int k = 0; k < rows[i].depth; k++)
            body[n++] = '[';
        for (int k = 0; k < rows[i].depth; k++)
            body[n++] = ']';
        n += (size_t)snprintf(body + n, sizeof(body) - n, ",\"jql\":\"a = 1\"}");
        struct policy_op op;
        struct policy_decision d;
        char *out = NULL;
        size_t olen = 0;
        policy_classify("POST", "/rest/api/3/search/jql", 22, &op);
        policy_apply_body(&pol_triage, &op, body, n, &out, &olen, &d);
        CHECK_MSG(d.verdict == rows[i].verdict, "depth %d: verdict %d (%s)", rows[i].depth,
                  d.verdict, d.reason);
        free(out);
    }
}

/* ---- lookups and the cache -------------------------------------------- */

static void test_lookup(void)
{
    char buf[256], key[POLICY_MAX_KEY + 1];
    CHECK(policy_lookup_path(POLICY_LOOKUP_ISSUE, "10099", buf, sizeof(buf)) == 0);
    CHECK_STR(buf, "/rest/api/3/issue/10099?fields=project");
    CHECK(policy_lookup_path(POLICY_LOOKUP_CONTENT, "5", buf, sizeof(buf)) == 0);
    CHECK_STR(buf, "/wiki/rest/api/content/5?expand=space");
    CHECK(policy_lookup_path(POLICY_LOOKUP_SPACE, "7", buf, sizeof(buf)) == 0);
    CHECK_STR(buf, "/wiki/api/v2/spaces/7");
    CHECK(policy_lookup_path(POLICY_LOOKUP_PROJECT, "3", buf, sizeof(buf)) == 0);
    CHECK_STR(buf, "/rest/api/3/project/3");
    CHECK(policy_lookup_path(POLICY_LOOKUP_ISSUE, "1/../x", buf, sizeof(buf)) < 0);
    CHECK(policy_lookup_path(POLICY_LOOKUP_ISSUE, "10099", buf, 8) < 0);

    const char *ib =
        "{\"id\":\"10099\",\"key\":\"SEC-1\",\"fields\":{\"project\":{\"key\":\"SEC\"}}}";
    CHECK(policy_lookup_parse(POLICY_LOOKUP_ISSUE, ib, strlen(ib), key, sizeof(key)) == 0);
    CHECK_STR(key, "SEC");
    const char *cb = "{\"id\":\"5\",\"space\":{\"key\":\"DOCS\"}}";
    CHECK(policy_lookup_parse(POLICY_LOOKUP_CONTENT, cb, strlen(cb), key, sizeof(key)) == 0);
    CHECK_STR(key, "DOCS");
    const char *sb = "{\"id\":\"7\",\"key\":\"ENG\"}";
    CHECK(policy_lookup_parse(POLICY_LOOKUP_SPACE, sb, strlen(sb), key, sizeof(key)) == 0);
    CHECK_STR(key, "ENG");
    const char *bad[] = {"{}", "not json", "{\"fields\":{\"project\":{\"key\":5}}}",
                         "{\"fields\":{\"project\":{\"key\":\"A B\"}}}"};
    for (size_t i = 0; i < 4; i++)
        CHECK(policy_lookup_parse(POLICY_LOOKUP_ISSUE, bad[i], strlen(bad[i]), key, sizeof(key)) <
              0);

    struct policy_cache *pc = policy_cache_new();
    CHECK(!policy_cache_get(pc, "a", POLICY_LOOKUP_ISSUE, "1", 0, key, sizeof(key)));
    policy_cache_put(pc, "a", POLICY_LOOKUP_ISSUE, "1", "OPS", 1000);
    CHECK(policy_cache_get(pc, "a", POLICY_LOOKUP_ISSUE, "1", 2000, key, sizeof(key)));
    CHECK_STR(key, "OPS");
    CHECK(!policy_cache_get(pc, "b", POLICY_LOOKUP_ISSUE, "1", 2000, key, sizeof(key)));
    CHECK(!policy_cache_get(pc, "a", POLICY_LOOKUP_CONTENT, "1", 2000, key, sizeof(key)));
    CHECK(!policy_cache_get(pc, "a", POLICY_LOOKUP_ISSUE, "1", 1000 + POLICY_CACHE_TTL_MS, key,
                            sizeof(key)));
    for (int i = 0; i < POLICY_CACHE_MAX + 10; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%d", 100 + i);
        policy_cache_put(pc, "a", POLICY_LOOKUP_ISSUE, id, "OPS", 5000 + i);
    }
    CHECK(policy_cache_size(pc) == POLICY_CACHE_MAX);
    CHECK(!policy_cache_get(pc, "a", POLICY_LOOKUP_ISSUE, "100", 6000, key, sizeof(key)));
    CHECK(policy_cache_get(pc, "a", POLICY_LOOKUP_ISSUE, "1133", 6200, key, sizeof(key)));
    policy_cache_free(pc);
    policy_cache_free(NULL);
}

int main(void)
{
    test_classifier();
    test_admin_refused();
    test_verdicts();
    test_narrow();
    test_query();
    test_query_nul();
    test_bodies();
    test_body_depth();
    test_lookup();
    TEST_DONE();
}
