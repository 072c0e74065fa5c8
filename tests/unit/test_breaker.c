/*
 * Unit tests for the breaker: the state machine driven by an injected clock
 * (threshold, consecutive-only counting, CAPTCHA at once, cooldown doubling
 * to the cap, one probe at a time, a probe that never reports, stragglers,
 * close on success and on reset, state kept across configure), and the
 * classification table of Atlassian's answers.
 */
#include <string.h>

#include "breaker.h"
#include "testlib.h"
#include "util.h"

static struct config_credential t_creds[2];
static struct config t_cfg;

static void cfg_reset(unsigned reject_after)
{
    memset(&t_cfg, 0, sizeof(t_cfg));
    memset(t_creds, 0, sizeof(t_creds));
    t_creds[0].name = "svc";
    t_creds[0].email = "bot@example.com";
    t_creds[0].reject_after = reject_after;
    t_creds[1].name = "other";
    t_cfg.credentials = t_creds;
    t_cfg.ncredentials = 2;
}

/* One step of a scripted run: at time t, either ask (admit) or report an outcome. */
enum step_kind { ADMIT, REPORT, RESET, CONFIGURE };

struct step {
    int64_t t;
    enum step_kind kind;
    /* ADMIT: the verdict expected. REPORT: outcome, probe flag. */
    enum breaker_verdict verdict;
    enum breaker_outcome outcome;
    bool probe;
    /* after the step */
    enum breaker_state state;
    bool changed; /* REPORT/RESET: a transition happened */
};

#define A(t, v, st)                                                                                \
    {                                                                                              \
        t, ADMIT, v, 0, false, st, false                                                           \
    }
#define R(t, o, pr, st, ch)                                                                        \
    {                                                                                              \
        t, REPORT, 0, o, pr, st, ch                                                                \
    }
#define AUTH BREAKER_OUTCOME_AUTH_FAILED
#define OK BREAKER_OUTCOME_OK
#define CAP BREAKER_OUTCOME_CAPTCHA
#define NEU BREAKER_OUTCOME_NEUTRAL
#define CLOSED BREAKER_CLOSED
#define OPEN BREAKER_OPEN
#define PROBING BREAKER_PROBING
#define MIN 60000

struct script {
    const char *name;
    unsigned reject_after;
    struct step steps[24];
    size_t n;
};

static const struct script scripts[] = {
    {"three failures open it; the 4th is held",
     3,
     {A(0, BREAKER_PASS, CLOSED), R(1, AUTH, false, CLOSED, false), A(2, BREAKER_PASS, CLOSED),
      R(3, AUTH, false, CLOSED, false), A(4, BREAKER_PASS, CLOSED), R(5, AUTH, false, OPEN, true),
      A(6, BREAKER_HOLD, OPEN), A(5 + MIN - 1, BREAKER_HOLD, OPEN)},
     8},
    {"only consecutive failures count",
     3,
     {R(0, AUTH, false, CLOSED, false), R(1, AUTH, false, CLOSED, false),
      R(2, OK, false, CLOSED, false), R(3, AUTH, false, CLOSED, false),
      R(4, AUTH, false, CLOSED, false), R(5, NEU, false, CLOSED, false),
      R(6, AUTH, false, OPEN, true)},
     7},
    {"reject_after 1", 1, {R(0, AUTH, false, OPEN, true), A(1, BREAKER_HOLD, OPEN)}, 2},
    {"a CAPTCHA opens it at once", 3, {R(0, CAP, false, OPEN, true), A(1, BREAKER_HOLD, OPEN)}, 2},
    {"probe after the cooldown; one at a time; success closes",
     3,
     {R(0, AUTH, false, CLOSED, false), R(0, AUTH, false, CLOSED, false),
      R(0, AUTH, false, OPEN, true), A(MIN - 1, BREAKER_HOLD, OPEN), A(MIN, BREAKER_PROBE, PROBING),
      A(MIN + 1, BREAKER_HOLD, PROBING), A(MIN + 2, BREAKER_HOLD, PROBING),
      R(MIN + 3, OK, true, CLOSED, true), A(MIN + 4, BREAKER_PASS, CLOSED),
      R(MIN + 5, AUTH, false, CLOSED, false)},
     10},
    {"failed probes double the cooldown up to 15 min",
     1,
     {R(0, AUTH, false, OPEN, true), A(MIN, BREAKER_PROBE, PROBING),
      R(MIN, AUTH, true, OPEN, true), /* next: 2 min */
      A(MIN + 2 * MIN - 1, BREAKER_HOLD, OPEN), A(3 * MIN, BREAKER_PROBE, PROBING),
      R(3 * MIN, AUTH, true, OPEN, true), /* next: 4 min */
      A(7 * MIN - 1, BREAKER_HOLD, OPEN), A(7 * MIN, BREAKER_PROBE, PROBING),
      R(7 * MIN, AUTH, true, OPEN, true),                                       /* 8 min */
      A(15 * MIN, BREAKER_PROBE, PROBING), R(15 * MIN, AUTH, true, OPEN, true), /* 15 (cap) */
      A(30 * MIN - 1, BREAKER_HOLD, OPEN), A(30 * MIN, BREAKER_PROBE, PROBING),
      R(30 * MIN, CAP, true, OPEN, true), /* still 15 */
      A(45 * MIN - 1, BREAKER_HOLD, OPEN), A(45 * MIN, BREAKER_PROBE, PROBING),
      R(45 * MIN, OK, true, CLOSED, true)},
     17},
    {"a neutral probe (429, 5xx) retries after the same cooldown",
     1,
     {R(0, AUTH, false, OPEN, true), A(MIN, BREAKER_PROBE, PROBING), R(MIN, NEU, true, OPEN, true),
      A(2 * MIN - 1, BREAKER_HOLD, OPEN), A(2 * MIN, BREAKER_PROBE, PROBING)},
     5},
    {"a probe that never reports frees the slot after the probe timeout",
     1,
     {R(0, AUTH, false, OPEN, true), A(MIN, BREAKER_PROBE, PROBING),
      A(MIN + BREAKER_PROBE_TIMEOUT_MS - 1, BREAKER_HOLD, PROBING),
      A(MIN + BREAKER_PROBE_TIMEOUT_MS, BREAKER_PROBE, PROBING)},
     4},
    {"stragglers sent before it opened do not extend it; a success closes it",
     2,
     {R(0, AUTH, false, CLOSED, false), R(0, AUTH, false, OPEN, true),
      R(1, AUTH, false, OPEN, false), R(2, AUTH, false, OPEN, false),
      A(MIN, BREAKER_PROBE, PROBING), R(MIN + 1, AUTH, false, PROBING, false), /* not the probe */
      R(MIN + 2, OK, false, CLOSED, true)},
     7},
    {"reset closes it (changed secret, new oauth token)",
     1,
     {R(0, AUTH, false, OPEN, true),
      {1, RESET, 0, 0, false, CLOSED, true},
      A(2, BREAKER_PASS, CLOSED),
      {3, RESET, 0, 0, false, CLOSED, false},
      R(4, AUTH, false, OPEN, true),
      A(4 + MIN, BREAKER_PROBE, PROBING)},
     6},
    {"configure keeps the state (reload without a changed secret)",
     1,
     {R(0, AUTH, false, OPEN, true),
      {1, CONFIGURE, 0, 0, false, OPEN, false},
      A(2, BREAKER_HOLD, OPEN)},
     3},
};

static void run_script(const struct script *s)
{
    struct breaker *b = breaker_new();
    cfg_reset(s->reject_after);
    breaker_configure(b, &t_cfg);
    for (size_t i = 0; i < s->n; i++) {
        const struct step *st = &s->steps[i];
        struct breaker_info info;
        struct breaker_change chg;
        bool changed = false;
        memset(&info, 0, sizeof(info));
        if (st->kind == ADMIT) {
            enum breaker_verdict v = breaker_admit(b, "svc", st->t, &info, &chg);
            CHECK_MSG(v == st->verdict, "%s: step %zu: verdict %d, want %d", s->name, i, v,
                      st->verdict);
        } else if (st->kind == REPORT) {
            changed = breaker_report(b, "svc", st->probe, st->outcome, "401", st->t, &info, &chg);
            CHECK_MSG(changed == st->changed, "%s: step %zu: changed %d", s->name, i, changed);
            if (changed)
                CHECK_MSG(chg.from != chg.to && chg.to == st->state, "%s: step %zu: change",
                          s->name, i);
        } else if (st->kind == RESET) {
            changed = breaker_reset(b, "svc", st->t);
            CHECK_MSG(changed == st->changed, "%s: step %zu: reset changed %d", s->name, i,
                      changed);
        } else {
            breaker_configure(b, &t_cfg);
        }
        struct breaker_info snap[4];
        size_t n = breaker_snapshot(b, st->t, snap, 4);
        CHECK(n == 2);
        CHECK_STR(snap[0].credential, "svc");
        CHECK_MSG(snap[0].state == st->state, "%s: step %zu: state %s, want %s", s->name, i,
                  breaker_state_name(snap[0].state), breaker_state_name(st->state));
        /* The other credential is never touched. */
        CHECK_MSG(snap[1].state == BREAKER_CLOSED && snap[1].transitions == 0, "%s: step %zu",
                  s->name, i);
        CHECK(breaker_admit(b, "other", st->t, NULL, NULL) == BREAKER_PASS);
    }
    breaker_free(b);
}

static void test_scripts(void)
{
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++)
        run_script(&scripts[i]);
}

static void test_info(void)
{
    struct breaker *b = breaker_new();
    struct breaker_info info;
    cfg_reset(3);
    breaker_configure(b, &t_cfg);
    breaker_report(b, "svc", false, BREAKER_OUTCOME_CAPTCHA,
                   "401, X-Seraph-LoginReason: AUTHENTICATION_DENIED", 1000, &info, NULL);
    CHECK(info.state == BREAKER_OPEN && info.captcha);
    CHECK_STR(info.email, "bot@example.com");
    CHECK_STR(info.said, "401, X-Seraph-LoginReason: AUTHENTICATION_DENIED");
    CHECK(breaker_admit(b, "svc", 31000, &info, NULL) == BREAKER_HOLD);
    CHECK(info.retry_in_ms == 30000);
    CHECK(info.transitions == 1);
    /* Unknown credentials pass and are not created. */
    CHECK(breaker_admit(b, "nope", 0, &info, NULL) == BREAKER_PASS);
    CHECK(!breaker_report(b, "nope", false, BREAKER_OUTCOME_AUTH_FAILED, "x", 0, NULL, NULL));
    CHECK(!breaker_reset(b, "nope", 0));
    /* A reload that removes "svc" keeps its open state for a later re-add; "other" stays. */
    t_cfg.credentials = &t_creds[1];
    t_cfg.ncredentials = 1;
    breaker_configure(b, &t_cfg);
    struct breaker_info snap[4];
    size_t n = breaker_snapshot(b, 0, snap, 4);
    CHECK(n == 2 && strcmp(snap[0].credential, "other") == 0 && snap[0].configured);
    CHECK(strcmp(snap[1].credential, "svc") == 0 && !snap[1].configured);
    CHECK(breaker_snapshot(b, 0, snap, 1) == 1); /* bounded by cap */
    /* A long "said" is cut, never overrun. */
    char long_said[BREAKER_MAX_SAID * 2];
    memset(long_said, 'x', sizeof(long_said) - 1);
    long_said[sizeof(long_said) - 1] = '\0';
    cfg_reset(1);
    breaker_configure(b, &t_cfg);
    breaker_reset(b, "svc", 0);
    breaker_report(b, "svc", false, BREAKER_OUTCOME_AUTH_FAILED, long_said, 0, &info, NULL);
    CHECK(strlen(info.said) == BREAKER_MAX_SAID);
    breaker_free(b);
    breaker_free(NULL);
}

static void test_capacity(void)
{
    struct breaker *b = breaker_new();
    static struct config_credential many[BREAKER_MAX_ENTRIES + 5];
    static char names[BREAKER_MAX_ENTRIES + 5][16];
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    for (size_t i = 0; i < UTIL_ARRAY_LEN(many); i++) {
        snprintf(names[i], sizeof(names[i]), "c%zu", i);
        many[i].name = names[i];
        many[i].reject_after = 1;
    }
    cfg.credentials = many;
    cfg.ncredentials = UTIL_ARRAY_LEN(many);
    breaker_configure(b, &cfg);
    /* Past the bound a credential is not tracked: it passes, it never opens. */
    const char *last = names[UTIL_ARRAY_LEN(many) - 1];
    CHECK(!breaker_report(b, last, false, BREAKER_OUTCOME_AUTH_FAILED, "401", 0, NULL, NULL));
    CHECK(breaker_admit(b, last, 0, NULL, NULL) == BREAKER_PASS);
    CHECK(breaker_report(b, "c0", false, BREAKER_OUTCOME_AUTH_FAILED, "401", 0, NULL, NULL));
    breaker_free(b);
}

struct ccase {
    int status;
    const char *seraph, *denied;
    enum breaker_outcome want;
};

static void test_classify(void)
{
    static const struct ccase cases[] = {
        {200, NULL, NULL, OK},
        {201, NULL, NULL, OK},
        {204, NULL, NULL, OK},
        {303, NULL, NULL, OK},
        {400, NULL, NULL, OK},
        {403, NULL, NULL, OK}, /* authenticated but not allowed */
        {404, NULL, NULL, OK},
        {410, NULL, NULL, OK},
        {401, NULL, NULL, AUTH},                   /* legacy edge 401, gateway 401 */
        {401, "AUTHENTICATED_FAILED", NULL, AUTH}, /* current Cloud shape */
        {200, "AUTHENTICATED_FAILED", NULL, AUTH}, /* anonymous-capable endpoint */
        {403, "authenticated_failed", NULL, AUTH},
        {401, "AUTHENTICATION_DENIED", NULL, CAP}, /* CAPTCHA */
        {403, "AUTHENTICATION_DENIED", "CAPTCHA_CHALLENGE; login-url=https://x/login.jsp", CAP},
        {403, NULL, "CAPTCHA_CHALLENGE", CAP},
        {200, "OUT", NULL, OK},
        {429, NULL, NULL, NEU},
        {500, NULL, NULL, NEU},
        {502, NULL, NULL, NEU},
        {503, NULL, NULL, NEU},
        {0, NULL, NULL, NEU},
        {429, "AUTHENTICATED_FAILED", NULL, AUTH},
    };
    for (size_t i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
        enum breaker_outcome got =
            breaker_classify(cases[i].status, cases[i].seraph, cases[i].denied);
        CHECK_MSG(got == cases[i].want, "classify %d %s %s: %d, want %d", cases[i].status,
                  cases[i].seraph ? cases[i].seraph : "-", cases[i].denied ? cases[i].denied : "-",
                  got, cases[i].want);
    }
    CHECK_STR(breaker_state_name(BREAKER_CLOSED), "ok");
    CHECK_STR(breaker_state_name(BREAKER_OPEN), "rejected");
    CHECK_STR(breaker_state_name(BREAKER_PROBING), "probing");
}

int main(void)
{
    test_scripts();
    test_info();
    test_capacity();
    test_classify();
    TEST_DONE();
}
