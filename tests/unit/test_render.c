/* test_render.c - templates and leads into subject, preheader, HTML and text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmark.h>

#include "testutil.h"

#include "dripd/content.h"
#include "dripd/error.h"
#include "dripd/render.h"
#include "dripd/store.h"
#include "dripd/util.h"

#define COMPANY "Northwind Pipeline Coaching"
#define ADDRESS "12 Harbour Street, Bristol BS1 4QA, United Kingdom"

static struct content test_content = {
	.refs = 1,
	.company = COMPANY,
	.postal_address = ADDRESS,
};

static struct content_template make_tpl(const char *subject, const char *preheader,
					const char *body)
{
	struct content_template t = {
		.path = "test/t.md",
		.file = "/content/templates/test/t.md",
		.subject = (char *)subject,
		.preheader = (char *)preheader,
		.body = (char *)body,
		.body_line = 5,
	};
	return t;
}

static struct lead make_lead(void)
{
	struct lead l = {
		.id = 7,
		.email = "maya@example.org",
		.first_name = "Maya",
		.last_name = "Lopez",
		.company = "Acme Ltd",
		.title = "Head of Sales",
		.tz = "Europe/Berlin",
		.stage = "awareness",
		.status = "active",
		.tags = "[]",
		.attrs = "{\"plan\": \"Pro\", \"seats\": 12}",
	};
	return l;
}

static void render_ok(const struct content_template *tpl, const struct lead *lead,
		      struct render_out *out)
{
	char err[512] = "";
	int rc = render_message(&test_content, tpl, lead, out, err, sizeof(err));
	if (rc != 0)
		fail_msg("expected the template to render, got %d: %s", rc, err);
	assert_non_null(out->subject);
	assert_non_null(out->preheader);
	assert_non_null(out->html);
	assert_non_null(out->text);
}

static void test_merge_fields_fill_subject_text_and_html(void **state)
{
	struct content_template tpl =
		make_tpl("Hi {{first_name}} at {{company}}", "For {{title}}",
			 "Hello {{first_name}} {{last_name}} ({{email}}), stage {{stage}}.\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.subject, "Hi Maya at Acme Ltd");
	assert_string_equal(out.preheader, "For Head of Sales");
	assert_contains(out.html, "<p>Hello Maya Lopez (maya@example.org), stage awareness.</p>");
	assert_contains(out.html, "<title>Hi Maya at Acme Ltd</title>");
	if (strncmp(out.text, "Hello Maya Lopez (maya@example.org), stage awareness.\n", 54) != 0)
		fail_msg("expected the text to start with the filled paragraph, got \"%s\"",
			 out.text);
	render_out_clear(&out);
	assert_null(out.subject);
	assert_null(out.html);
}

static void test_fallback_is_used_only_when_the_value_is_empty(void **state)
{
	struct content_template tpl =
		make_tpl("Welcome, {{first_name|there}}", "",
			 "Hi {{ first_name | there }}, from {{company|your team}}.\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.first_name = "";
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.subject, "Welcome, there");
	assert_contains(out.html, "<p>Hi there, from Acme Ltd.</p>");
	assert_contains(out.text, "Hi there, from Acme Ltd.");
	render_out_clear(&out);

	lead = make_lead();
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.subject, "Welcome, Maya");
	assert_not_contains(out.text, "there");
	render_out_clear(&out);
}

static void test_empty_field_without_fallback_is_empty(void **state)
{
	struct content_template tpl = make_tpl("[{{title}}]", "", "Title: [{{title}}]\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.title = "";
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.subject, "[]");
	assert_contains(out.text, "Title: []");
	render_out_clear(&out);
}

static void test_attrs_fields_read_the_lead_attributes(void **state)
{
	struct content_template tpl =
		make_tpl("Your {{attrs.plan}} plan", "",
			 "Plan {{attrs.plan}}; region {{attrs.region|unknown}}; seats "
			 "[{{attrs.seats}}].\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.subject, "Your Pro plan");
	/* A missing attribute takes the fallback; a non-string one counts as empty. */
	assert_contains(out.text, "Plan Pro; region unknown; seats [].");
	assert_contains(out.html, "<p>Plan Pro; region unknown; seats [].</p>");
	render_out_clear(&out);

	lead.attrs = "";
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.subject, "Your  plan");
	render_out_clear(&out);
}

static void test_hostile_values_are_escaped_in_html_and_verbatim_in_text(void **state)
{
	struct content_template tpl =
		make_tpl("Hi {{first_name}}", "{{last_name}}",
			 "Hi {{first_name}}, **{{last_name}}**\n\n- {{company}}\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.first_name = "<script>alert(1)</script>";
	lead.last_name = "\"&'";
	lead.company = "<img src=x onerror=alert(2)>";
	render_ok(&tpl, &lead, &out);
	assert_not_contains(out.html, "<script>");
	assert_not_contains(out.html, "<img");
	assert_contains(out.html, "Hi &lt;script&gt;alert(1)&lt;/script&gt;,");
	assert_contains(out.html, "<strong>&quot;&amp;&#39;</strong>");
	assert_contains(out.html, "<li>&lt;img src=x onerror=alert(2)&gt;</li>");
	assert_contains(out.html, "<title>Hi &lt;script&gt;alert(1)&lt;/script&gt;</title>");
	assert_contains(out.html, ">&quot;&amp;&#39;</div>");
	/* The text alternative is for people: values as they are. */
	assert_contains(out.text, "Hi <script>alert(1)</script>, \"&'");
	assert_contains(out.text, "- <img src=x onerror=alert(2)>");
	assert_string_equal(out.subject, "Hi <script>alert(1)</script>");
	render_out_clear(&out);
}

static void test_line_breaks_in_values_never_reach_subject_or_preheader(void **state)
{
	struct content_template tpl =
		make_tpl("Hi {{first_name}}!", "Note for {{company}}", "Hi {{first_name}}\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.first_name = "Eve\r\nBcc: evil@example.com";
	lead.company = "A\nB\rC\tD";
	render_ok(&tpl, &lead, &out);
	if (strpbrk(out.subject, "\r\n"))
		fail_msg("expected no CR/LF in the subject, got \"%s\"", out.subject);
	if (strpbrk(out.preheader, "\r\n"))
		fail_msg("expected no CR/LF in the preheader, got \"%s\"", out.preheader);
	assert_string_equal(out.subject, "Hi Eve  Bcc: evil@example.com!");
	assert_string_equal(out.preheader, "Note for A B C D");
	render_out_clear(&out);
}

static void test_merge_field_in_a_link_target_is_percent_encoded(void **state)
{
	struct content_template tpl =
		make_tpl("s", "",
			 "[open]({{attrs.url}} \"guide\") and "
			 "[track](https://example.com/r?e={{email}}&n={{first_name}})\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.attrs = "{\"url\": \"javascript:alert(1)\"}";
	lead.email = "a+b@example.org";
	lead.first_name = "\" onmouseover=\"x";
	render_ok(&tpl, &lead, &out);
	assert_not_contains(out.html, "href=\"javascript:");
	assert_not_contains(out.html, "onmouseover=\"");
	assert_contains(out.html, "href=\"javascript%3Aalert%281%29\" title=\"guide\"");
	assert_contains(out.html, "href=\"https://example.com/r?e=a%2Bb%40example.org&amp;n="
				  "%22%20onmouseover%3D%22x\"");
	assert_contains(out.text, "open <javascript%3Aalert%281%29>");
	render_out_clear(&out);
}

static void test_a_value_cannot_smuggle_another_field_into_a_link(void **state)
{
	/* The first field's value spells the placeholder of the second; it must stay text. */
	struct content_template tpl =
		make_tpl("s", "", "[go]({{attrs.url}}) Hi {{first_name}} {{last_name}}\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.attrs = "{\"url\": \"DRIPDMF1Z\"}";
	lead.first_name = "javascript:alert(1)";
	render_ok(&tpl, &lead, &out);
	assert_not_contains(out.html, "href=\"javascript:");
	assert_contains(out.html, "href=\"DRIPDMF1Z\"");
	assert_contains(out.html, "Hi javascript:alert(1) Lopez");
	assert_contains(out.text, "go <DRIPDMF1Z>");
	render_out_clear(&out);
}

static void test_markdown_in_a_value_is_not_interpreted(void **state)
{
	struct content_template tpl =
		make_tpl("s", "", "Hi {{first_name}}, see {{company}}.\n\n{{title}}\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.first_name = "**bold**";
	lead.company = "[prize](https://evil.example.com)";
	lead.title = "# Heading";
	render_ok(&tpl, &lead, &out);
	assert_not_contains(out.html, "<strong>");
	assert_not_contains(out.html, "<em>");
	assert_not_contains(out.html, "<h1>");
	assert_not_contains(out.html, "href=\"https://evil.example.com");
	assert_contains(out.html, "Hi **bold**, see [prize](https://evil.example.com).");
	assert_contains(out.html, "<p># Heading</p>");
	assert_contains(out.text, "Hi **bold**, see [prize](https://evil.example.com).");
	render_out_clear(&out);
}

static void test_template_markdown_is_rendered(void **state)
{
	struct content_template tpl = make_tpl(
		"s", "", "# Title\n\nSome **bold** and *em* and `code`.\n\n1. one\n2. two\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	render_ok(&tpl, &lead, &out);
	assert_contains(out.html, "<h1>Title</h1>");
	assert_contains(out.html, "<strong>bold</strong>");
	assert_contains(out.html, "<em>em</em>");
	assert_contains(out.html, "<code>code</code>");
	assert_contains(out.html, "<ol>\n<li>one</li>\n<li>two</li>\n</ol>");
	/* The text drops the markup but keeps the words. */
	assert_contains(out.text, "Title\n\nSome bold and em and code.\n\n1. one\n2. two\n");
	render_out_clear(&out);
}

static void test_long_markdown_renders_as_cmark_does_alone(void **state)
{
	(void)state;
	/* render gives cmark an arena of its own, freed per message: a body far larger than
	 * one of its chunks (with a single paragraph longer than a chunk too) must come out
	 * exactly as cmark's own allocator renders it, message after message. */
	struct buf md;
	buf_init(&md);
	for (int i = 0; i < 1500; i++)
		buf_printf(&md,
			   "## Part %d\n\nSome **bold** text, a [link](https://example.com/%d "
			   "\"t\") and `code` %d.\n\n- one\n- two *em*\n\n> quoted\n\n",
			   i, i, i);
	for (int i = 0; i < 12000; i++)
		buf_adds(&md, i % 11 ? "word " : "*word* ");
	buf_adds(&md, "\n\n```\ncode block\n```\n");
	char *want = cmark_markdown_to_html(md.data, md.len, CMARK_OPT_DEFAULT);
	struct content_template tpl = make_tpl("s", "", md.data);
	struct lead lead = make_lead();
	for (int round = 0; round < 3; round++) {
		struct render_out out;
		render_ok(&tpl, &lead, &out);
		assert_contains(out.html, want);
		assert_contains(out.text,
				"Part 1499\n\nSome bold text, a link <https://example.com/1499>");
		render_out_clear(&out);
	}
	free(want);
	buf_free(&md);
}

static void test_text_renders_lists_links_and_ends_with_the_footer(void **state)
{
	struct content_template tpl =
		make_tpl("s", "",
			 "Hi {{first_name|there}},\n\n"
			 "- first point\n"
			 "- second point\n\n"
			 "Read [the guide](https://example.com/guide \"guide\") today.\n\n"
			 "Ana\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	render_ok(&tpl, &lead, &out);
	assert_contains(out.text, "Hi Maya,\n\n- first point\n- second point\n");
	assert_contains(out.text, "Read the guide <https://example.com/guide> today.");
	static const char footer[] = "Ana\n\n-- \n" COMPANY "\n" ADDRESS "\n";
	size_t tl = strlen(out.text), fl = strlen(footer);
	if (tl < fl || strcmp(out.text + tl - fl, footer) != 0)
		fail_msg("expected the text to end with \"%s\", got \"%s\"", footer, out.text);
	/* The HTML carries the same footer. */
	assert_contains(out.html, "<hr>");
	assert_contains(out.html, COMPANY "<br>\n" ADDRESS "</p>\n</body>\n</html>\n");
	assert_contains(out.html, "<a href=\"https://example.com/guide\" title=\"guide\">the "
				  "guide</a>");
	render_out_clear(&out);
}

static void test_footer_is_html_escaped(void **state)
{
	struct content c = { .refs = 1, .company = "Smith & Sons <Ltd>", .postal_address = "" };
	struct content_template tpl = make_tpl("s", "", "Body\n");
	struct lead lead = make_lead();
	struct render_out out;
	char err[256] = "";
	(void)state;
	assert_int_equal(render_message(&c, &tpl, &lead, &out, err, sizeof(err)), 0);
	assert_contains(out.html, "Smith &amp; Sons &lt;Ltd&gt;</p>");
	assert_not_contains(out.html, "<Ltd>");
	assert_contains(out.text, "\n-- \nSmith & Sons <Ltd>\n");
	render_out_clear(&out);
}

static void test_preheader_is_a_hidden_div_in_the_html(void **state)
{
	struct content_template tpl =
		make_tpl("s", "A tip for {{company}} & friends", "Body text\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.preheader, "A tip for Acme Ltd & friends");
	assert_contains(out.html, "<div style=\"display:none;max-height:0;overflow:hidden;\">"
				  "A tip for Acme Ltd &amp; friends</div>");
	/* It comes before the body, and the text alternative does not carry it. */
	const char *div = strstr(out.html, "display:none"), *body = strstr(out.html, "Body text");
	assert_non_null(body);
	assert_true(div < body);
	assert_not_contains(out.text, "A tip for");
	render_out_clear(&out);

	tpl.preheader = "";
	render_ok(&tpl, &lead, &out);
	assert_not_contains(out.html, "display:none");
	render_out_clear(&out);
}

static void expect_check_error(const char *text, size_t offset, const char *what)
{
	size_t bad = (size_t)-1;
	char msg[256] = "";
	int rc = render_check(text, &bad, msg, sizeof(msg));
	if (rc != DRIP_EINVALID)
		fail_msg("\"%s\": expected DRIP_EINVALID, got %d", text, rc);
	if (bad != offset)
		fail_msg("\"%s\": expected the bad field at byte %zu, got %zu", text, offset, bad);
	assert_contains(msg, what);
}

static void test_check_accepts_known_fields(void **state)
{
	size_t bad = 99;
	char msg[256] = "untouched";
	(void)state;
	assert_int_equal(render_check("Hi {{first_name|there}} {{ last_name }} {{email}} "
				      "{{company}} {{title}} {{stage}} {{attrs.plan}} { single }",
				      &bad, msg, sizeof(msg)),
			 0);
	assert_int_equal(render_check("no fields at all", &bad, msg, sizeof(msg)), 0);
	assert_string_equal(msg, "untouched");
}

static void test_check_refuses_unknown_and_malformed_fields_with_their_offset(void **state)
{
	(void)state;
	expect_check_error("{{unknown}}", 0, "unknown merge field \"unknown\"");
	expect_check_error("Hi {{frist_name}}!", 3, "unknown merge field \"frist_name\"");
	expect_check_error("Hi {{first_name", 3, "not closed");
	expect_check_error("ok {{email}} then {{first_name\n}}", 18, "not closed");
	expect_check_error("a {{ }} b", 2, "malformed merge field");
	expect_check_error("a {{}} b", 2, "malformed merge field");
	expect_check_error("{{first name}}", 0, "malformed merge field");
	expect_check_error("x {{attrs.}}", 2, "unknown merge field \"attrs.\"");
	expect_check_error("{{first_name}} DRIPDMF0Z", 15, "reserved");
}

static void test_render_refuses_a_template_with_a_bad_field(void **state)
{
	struct content_template tpl = make_tpl("Hi {{nickname}}", "", "Body\n");
	struct lead lead = make_lead();
	struct render_out out;
	char err[256] = "";
	(void)state;
	assert_int_equal(render_message(&test_content, &tpl, &lead, &out, err, sizeof(err)),
			 DRIP_ECONTENT);
	assert_contains(err, "unknown merge field \"nickname\"");
	assert_null(out.subject);
	assert_null(out.html);
	assert_null(out.text);
}

/* ---- sections ------------------------------------------------------------------------- */

/* Renders `body` (subject "s") for `lead` and checks the text starts with `want`. */
static void expect_body_text(const char *body, const struct lead *lead, const char *want)
{
	struct content_template tpl = make_tpl("s", "", body);
	struct render_out out;
	render_ok(&tpl, lead, &out);
	if (strncmp(out.text, want, strlen(want)) != 0 ||
	    (out.text[strlen(want)] != '\n' && out.text[strlen(want)] != '\0'))
		fail_msg("body \"%s\": expected the text to start with the line \"%s\", got \"%s\"",
			 body, want, out.text);
	render_out_clear(&out);
}

static void test_if_section_shows_its_text_only_when_the_field_is_not_empty(void **state)
{
	struct lead lead = make_lead();
	(void)state;
	expect_body_text("Hi{{#if company}} from {{company}}{{/if}}.\n", &lead,
			 "Hi from Acme Ltd.");
	lead.company = "";
	expect_body_text("Hi{{#if company}} from {{company}}{{/if}}.\n", &lead, "Hi.");
	lead.company = NULL;
	expect_body_text("Hi{{#if company}} from {{company}}{{/if}}.\n", &lead, "Hi.");
	/* attrs.KEY: a missing or non-string attribute counts as empty. */
	lead = make_lead();
	expect_body_text("[{{#if attrs.plan}}plan {{attrs.plan}}{{/if}}]\n", &lead, "[plan Pro]");
	expect_body_text("[{{#if attrs.seats}}seats{{/if}}]\n", &lead, "[]");
	expect_body_text("[{{#if attrs.region}}region{{/if}}]\n", &lead, "[]");
}

static void test_inverted_if_section_shows_its_text_only_when_the_field_is_empty(void **state)
{
	struct lead lead = make_lead();
	(void)state;
	expect_body_text("Hi{{^if company}} there{{/if}}.\n", &lead, "Hi.");
	lead.company = "";
	expect_body_text("Hi{{^if company}} there{{/if}}.\n", &lead, "Hi there.");
}

static void test_tag_section_follows_the_lead_tags(void **state)
{
	struct lead lead = make_lead();
	const char *body = "A{{#tag vip}} VIP{{/tag}}{{^tag vip}} regular{{/tag}}.\n";
	(void)state;
	lead.tags = "[\"vip\"]";
	expect_body_text(body, &lead, "A VIP.");
	lead.tags = "[\"early\", \"vip\"]";
	expect_body_text(body, &lead, "A VIP.");
	lead.tags = "[]";
	expect_body_text(body, &lead, "A regular.");
	lead.tags = "[\"vip-not\"]";
	expect_body_text(body, &lead, "A regular.");
	lead.tags = "";
	expect_body_text(body, &lead, "A regular.");
}

static void test_sections_nest_two_deep(void **state)
{
	struct lead lead = make_lead();
	const char *body = "({{#if company}}C{{#tag vip}}V{{/tag}}c{{/if}})\n";
	(void)state;
	lead.tags = "[\"vip\"]";
	expect_body_text(body, &lead, "(CVc)");
	lead.tags = "[]";
	expect_body_text(body, &lead, "(Cc)");
	/* An outer section that does not hold hides the inner one even when it holds. */
	lead.tags = "[\"vip\"]";
	lead.company = "";
	expect_body_text(body, &lead, "()");
	/* An inverted section inside a section. */
	lead = make_lead();
	expect_body_text("({{#if company}}{{^tag vip}}not vip{{/tag}}{{/if}})\n", &lead,
			 "(not vip)");
}

static void test_sections_work_in_the_subject_and_preheader(void **state)
{
	struct content_template tpl =
		make_tpl("Hi{{#if first_name}} {{first_name}}{{/if}}!",
			 "{{#tag vip}}For our VIPs{{/tag}}{{^tag vip}}For you{{/tag}}", "Body\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.subject, "Hi Maya!");
	assert_string_equal(out.preheader, "For you");
	render_out_clear(&out);
	lead.first_name = "";
	lead.tags = "[\"vip\"]";
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.subject, "Hi!");
	assert_string_equal(out.preheader, "For our VIPs");
	assert_contains(out.html, "<title>Hi!</title>");
	render_out_clear(&out);
}

static void test_hidden_section_text_and_its_fields_never_reach_the_output(void **state)
{
	struct content_template tpl =
		make_tpl("S{{#tag vip}} {{first_name}}{{/tag}}", "",
			 "Start.\n\n{{#tag vip}}Secret for {{first_name}} at {{attrs.plan}}: "
			 "[offer](https://example.com/{{email}})\n\n{{/tag}}End {{last_name}}.\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.first_name = "FIRSTVALUE";
	lead.attrs = "{\"plan\": \"PLANVALUE\"}";
	render_ok(&tpl, &lead, &out);
	assert_string_equal(out.subject, "S");
	assert_not_contains(out.html, "FIRSTVALUE");
	assert_not_contains(out.html, "PLANVALUE");
	assert_not_contains(out.html, "Secret");
	assert_not_contains(out.html, "example.com");
	assert_not_contains(out.text, "FIRSTVALUE");
	assert_not_contains(out.text, "Secret");
	/* No placeholder of a hidden field is left behind either. */
	assert_not_contains(out.html, "DRIPDMF");
	assert_not_contains(out.text, "DRIPDMF");
	assert_contains(out.html, "<p>Start.</p>\n<p>End Lopez.</p>");
	assert_contains(out.text, "Start.\n\nEnd Lopez.");
	render_out_clear(&out);
}

static void test_hidden_fields_do_not_count_toward_the_field_limit(void **state)
{
	struct buf body;
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	buf_init(&body);
	buf_adds(&body, "{{#tag vip}}");
	for (int i = 0; i < 600; i++)
		buf_adds(&body, "{{first_name}} ");
	buf_adds(&body, "{{/tag}}Hi {{first_name}}.\n");
	struct content_template tpl = make_tpl("s", "", body.data);
	render_ok(&tpl, &lead, &out);
	assert_contains(out.text, "Hi Maya.");
	assert_not_contains(out.text, "Maya Maya");
	render_out_clear(&out);
	buf_free(&body);
}

static void test_check_accepts_well_formed_sections(void **state)
{
	size_t bad = 99;
	char msg[256] = "untouched";
	(void)state;
	int rc = render_check("{{#if company}}a{{#tag vip}}b{{/tag}}{{/if}}"
			      "{{^if attrs.plan}}c{{/if}}{{^tag early-bird_2}}d{{/tag}}"
			      "{{#if first_name }}e{{/if}}",
			      &bad, msg, sizeof(msg));
	if (rc != 0)
		fail_msg("expected well-formed sections to pass, got %d at %zu: %s", rc, bad, msg);
	assert_string_equal(msg, "untouched");
}

static void test_check_refuses_bad_sections_with_their_offset(void **state)
{
	(void)state;
	expect_check_error("Hi {{#if company}} there", 3, "never closed with {{/if}}");
	expect_check_error("{{#tag vip}}{{#if company}}x{{/if}}", 0, "never closed with {{/tag}}");
	expect_check_error("ab {{/if}}", 3, "{{/if}} closes no open section");
	expect_check_error("{{#if company}}x{{/tag}}", 16, "{{/tag}} closes no open section");
	expect_check_error("{{#tag vip}}x{{/if}}", 13, "{{/if}} closes no open section");
	expect_check_error("x {{#if nosuchfield}}y{{/if}}", 2,
			   "unknown merge field \"nosuchfield\" in a section");
	expect_check_error("{{#when company}}y{{/when}}", 0, "malformed section");
	expect_check_error("{{#if}}y{{/if}}", 0, "malformed section");
	expect_check_error("{{#if company extra}}y{{/if}}", 0, "malformed section");
	expect_check_error("{{#if company}}y{{/if }}", 16, "malformed section end");
	expect_check_error("{{#if company\n}}y{{/if}}", 0, "not closed");
}

static void test_check_refuses_sections_nested_seventeen_deep(void **state)
{
	struct buf t;
	size_t bad = 0;
	char msg[256] = "";
	(void)state;
	buf_init(&t);
	for (int i = 0; i < 16; i++)
		buf_adds(&t, "{{#if company}}");
	for (int i = 0; i < 16; i++)
		buf_adds(&t, "{{/if}}");
	int rc = render_check(t.data, &bad, msg, sizeof(msg));
	if (rc != 0)
		fail_msg("expected 16 levels to pass, got %d: %s", rc, msg);
	buf_free(&t);

	buf_init(&t);
	for (int i = 0; i < 17; i++)
		buf_adds(&t, "{{#if company}}");
	for (int i = 0; i < 17; i++)
		buf_adds(&t, "{{/if}}");
	/* The 17th opening is the bad one. */
	expect_check_error(t.data, 16 * strlen("{{#if company}}"), "nest deeper than 16");
	buf_free(&t);
}

struct visited {
	int n;
	char name[8][32];
	size_t offset[8];
};

static int visit_field(void *arg, const char *name, size_t offset)
{
	struct visited *v = arg;
	if (v->n < 8) {
		snprintf(v->name[v->n], sizeof(v->name[0]), "%s", name);
		v->offset[v->n] = offset;
	}
	v->n++;
	return 0;
}

static void expect_visit(const struct visited *v, int i, const char *text, const char *name,
			 const char *at)
{
	size_t want = (size_t)(strstr(text, at) - text);
	if (i >= v->n)
		fail_msg("expected field %d to be \"%s\", only %d visited", i, name, v->n);
	if (strcmp(v->name[i], name) != 0 || v->offset[i] != want)
		fail_msg("field %d: expected \"%s\" at %zu, got \"%s\" at %zu", i, name, want,
			 v->name[i], v->offset[i]);
}

static void test_each_field_visits_fields_inside_sections_and_tested_fields(void **state)
{
	const char *text = "Hi {{#if attrs.k}}{{first_name}}{{/if}}, "
			   "{{#tag vip}}{{^if company}}{{email}}{{/if}}{{/tag}} {{stage}}";
	struct visited v = { 0 };
	(void)state;
	assert_int_equal(render_each_field(text, visit_field, &v), 0);
	if (v.n != 5)
		fail_msg("expected 5 fields (attrs.k, first_name, company, email, stage), got %d",
			 v.n);
	expect_visit(&v, 0, text, "attrs.k", "{{#if attrs.k}}");
	expect_visit(&v, 1, text, "first_name", "{{first_name}}");
	expect_visit(&v, 2, text, "company", "{{^if company}}");
	expect_visit(&v, 3, text, "email", "{{email}}");
	expect_visit(&v, 4, text, "stage", "{{stage}}");
}

static int stop_at_second(void *arg, const char *name, size_t offset)
{
	int *n = arg;
	(void)name, (void)offset;
	return ++*n == 2 ? 42 : 0;
}

static void test_each_field_stops_at_the_first_non_zero_return(void **state)
{
	int n = 0;
	(void)state;
	assert_int_equal(
		render_each_field("{{#if company}}{{email}}{{stage}}{{/if}}", stop_at_second, &n),
		42);
	assert_int_equal(n, 2);
	/* A malformed text is walked up to its problem, and that is not an error here. */
	struct visited v = { 0 };
	assert_int_equal(render_each_field("{{email}} {{#if nope}} {{stage}}", visit_field, &v), 0);
	assert_int_equal(v.n, 1);
}

/* ---- hostile values ------------------------------------------------------------------- */

static void test_markup_in_first_name_is_escaped_even_inside_a_link(void **state)
{
	struct content_template tpl =
		make_tpl("Hi {{first_name}}", "",
			 "Hi {{first_name}}, [see **{{first_name}}**](https://example.com/a).\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.first_name = "</a><script>alert(1)</script>";
	render_ok(&tpl, &lead, &out);
	assert_not_contains(out.html, "<script");
	assert_not_contains(out.html, "</a><");
	assert_contains(out.html, "Hi &lt;/a&gt;&lt;script&gt;alert(1)&lt;/script&gt;, ");
	assert_contains(out.html,
			"<a href=\"https://example.com/a\">see <strong>&lt;/a&gt;&lt;script&gt;"
			"alert(1)&lt;/script&gt;</strong></a>");
	assert_contains(out.html, "<title>Hi &lt;/a&gt;&lt;script&gt;alert(1)&lt;/script&gt;");
	render_out_clear(&out);
}

static void test_crlf_in_first_name_never_reaches_the_subject(void **state)
{
	struct content_template tpl =
		make_tpl("{{first_name}}, a note", "Hi {{first_name}}", "Hi {{first_name}}\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	lead.first_name = "\r\nBcc: x@evil.example";
	render_ok(&tpl, &lead, &out);
	if (strpbrk(out.subject, "\r\n"))
		fail_msg("expected no CR/LF in the subject, got \"%s\"", out.subject);
	if (strpbrk(out.preheader, "\r\n"))
		fail_msg("expected no CR/LF in the preheader, got \"%s\"", out.preheader);
	assert_string_equal(out.subject, "  Bcc: x@evil.example, a note");
	assert_contains(out.html, "<title>  Bcc: x@evil.example, a note</title>");
	render_out_clear(&out);
}

static void test_a_one_megabyte_first_name_renders_at_a_sane_size(void **state)
{
	const size_t n = 1u << 20;
	char *big = xmalloc(n + 1);
	struct content_template tpl = make_tpl("Hi {{first_name}}", "", "Hi {{first_name}}.\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	memset(big, 'x', n);
	big[n] = '\0';
	lead.first_name = big;
	render_ok(&tpl, &lead, &out);
	size_t sl = strlen(out.subject), hl = strlen(out.html), tl = strlen(out.text);
	if (sl != n + 3)
		fail_msg("expected a subject of %zu bytes, got %zu", n + 3, sl);
	/* The name appears twice in the HTML (title and body), once in the text. */
	if (hl < 2 * n || hl > 2 * n + 4096)
		fail_msg("expected the HTML to be between %zu and %zu bytes, got %zu", 2 * n,
			 2 * n + 4096, hl);
	if (tl < n || tl > n + 4096)
		fail_msg("expected the text to be between %zu and %zu bytes, got %zu", n, n + 4096,
			 tl);
	render_out_clear(&out);
	free(big);
}

static void test_invalid_utf8_in_company_cannot_break_out_of_escaping(void **state)
{
	struct content_template tpl =
		make_tpl("At {{company}}", "",
			 "At {{company}}.\n\n[go](https://example.com/?c={{company}})\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	/* Stray bytes, a 3-byte sequence cut short just before markup, another at the end. */
	lead.company = "\xff\xfe<b>\xe2\x82\"><script>x</script>\xe2\x82";
	render_ok(&tpl, &lead, &out);
	assert_not_contains(out.html, "<script");
	assert_not_contains(out.html, "<b>");
	assert_contains(out.html, "At \xff\xfe&lt;b&gt;\xe2\x82&quot;&gt;&lt;script&gt;x&lt;/"
				  "script&gt;\xe2\x82.");
	assert_contains(out.html, "href=\"https://example.com/?c=%FF%FE%3Cb%3E%E2%82%22%3E%3Cscript"
				  "%3Ex%3C%2Fscript%3E%E2%82\"");
	assert_contains(out.text, "At \xff\xfe<b>\xe2\x82\"><script>x</script>\xe2\x82.");
	assert_string_equal(out.subject, "At \xff\xfe<b>\xe2\x82\"><script>x</script>\xe2\x82");
	render_out_clear(&out);
}

/* ---- tracking and the touch as sent --------------------------------------------------- */

struct clicks {
	size_t n;
	size_t index[8];
	char url[8][256];
	char tag[8][64];
};

static char *record_click(void *arg, size_t index, const char *url, const char *tag)
{
	struct clicks *c = arg;
	if (c->n < 8) {
		c->index[c->n] = index;
		snprintf(c->url[c->n], sizeof(c->url[0]), "%s", url);
		snprintf(c->tag[c->n], sizeof(c->tag[0]), "%s", tag ? tag : "(null)");
	}
	c->n++;
	return xasprintf("https://t.example/c/%zu", index);
}

static const struct content_sequence nurture_seq = { .name = "seq", .mode = CONTENT_NURTURE };

static void touch_ok(const struct content_sequence *seq, const struct content_template *tpl,
		     const struct lead *lead, const struct render_tracking *trk,
		     struct render_out *out)
{
	char err[512] = "";
	int rc = render_touch(&test_content, seq, tpl, lead, trk, out, err, sizeof(err));
	if (rc != 0)
		fail_msg("expected the touch to render, got %d: %s", rc, err);
}

static int count_of(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static const char tracked_body[] =
	"Read [the guide](https://example.com/guide?who={{first_name}} \"guide\").\n\n"
	"{{#tag vip}}[VIP offer](https://example.com/vip \"vip\")\n\n{{/tag}}"
	"Write to [us](mailto:hi@example.com) or see ![logo](https://example.com/logo.png).\n\n"
	"[Pricing](HTTPS://example.com/pricing \"pricing\") and <https://example.com/auto>.\n";

static void expect_click(const struct clicks *c, size_t i, const char *url, const char *tag)
{
	if (i >= c->n)
		fail_msg("expected link %zu (%s) to be tracked, only %zu were", i, url, c->n);
	if (c->index[i] != i)
		fail_msg("call %zu: expected index %zu, got %zu", i, i, c->index[i]);
	if (strcmp(c->url[i], url) != 0)
		fail_msg("link %zu: expected the URL \"%s\", got \"%s\"", i, url, c->url[i]);
	if (strcmp(c->tag[i], tag) != 0)
		fail_msg("link %zu: expected the tag \"%s\", got \"%s\"", i, tag, c->tag[i]);
}

static void test_tracking_rewrites_every_web_link_in_order(void **state)
{
	struct content_template tpl = make_tpl("s", "", tracked_body);
	struct lead lead = make_lead();
	struct clicks clicks = { 0 };
	struct render_tracking trk = { .click_url = record_click, .arg = &clicks };
	struct render_out out;
	(void)state;
	lead.first_name = "Maya Ö&";
	touch_ok(&nurture_seq, &tpl, &lead, &trk, &out);
	if (clicks.n != 3)
		fail_msg("expected 3 tracked links, got %zu", clicks.n);
	/* Merge fields are filled (percent-encoded) before the tracker sees the URL. */
	expect_click(&clicks, 0, "https://example.com/guide?who=Maya%20%C3%96%26", "guide");
	expect_click(&clicks, 1, "HTTPS://example.com/pricing", "pricing");
	expect_click(&clicks, 2, "https://example.com/auto", "");
	assert_contains(out.html, "<a href=\"https://t.example/c/0\">the guide</a>");
	assert_contains(out.html, "<a href=\"https://t.example/c/1\">Pricing</a>");
	assert_contains(out.html, "<a href=\"https://t.example/c/2\">");
	/* The tags were for dripd: no title reaches the reader. */
	assert_not_contains(out.html, "title=");
	assert_not_contains(out.html, "example.com/guide");
	assert_not_contains(out.html, "example.com/pricing");
	/* mailto: links and images are left alone. */
	assert_contains(out.html, "<a href=\"mailto:hi@example.com\">us</a>");
	assert_contains(out.html, "<img src=\"https://example.com/logo.png\" alt=\"logo\"");
	/* The text shows the tracked URLs too. */
	assert_contains(out.text, "Read the guide <https://t.example/c/0>.");
	assert_contains(out.text, "Pricing <https://t.example/c/1>");
	assert_contains(out.text, "<https://t.example/c/2>");
	assert_contains(out.text, "us <mailto:hi@example.com>");
	assert_not_contains(out.text, "example.com/guide");
	assert_not_contains(out.text, "example.com/pricing");
	/* Tracking adds nothing it was not asked for. */
	assert_not_contains(out.html, "width=\"1\"");
	assert_not_contains(out.html, "Unsubscribe");
	assert_not_contains(out.text, "Unsubscribe");
	render_out_clear(&out);
}

static void test_tracking_includes_links_of_shown_sections_only(void **state)
{
	struct content_template tpl = make_tpl("s", "", tracked_body);
	struct lead lead = make_lead();
	struct clicks clicks = { 0 };
	struct render_tracking trk = { .click_url = record_click, .arg = &clicks };
	struct render_out out;
	(void)state;
	lead.tags = "[\"vip\"]";
	touch_ok(&nurture_seq, &tpl, &lead, &trk, &out);
	if (clicks.n != 4)
		fail_msg("expected 4 tracked links for a vip, got %zu", clicks.n);
	expect_click(&clicks, 0, "https://example.com/guide?who=Maya", "guide");
	expect_click(&clicks, 1, "https://example.com/vip", "vip");
	expect_click(&clicks, 2, "HTTPS://example.com/pricing", "pricing");
	expect_click(&clicks, 3, "https://example.com/auto", "");
	assert_contains(out.html, "<a href=\"https://t.example/c/1\">VIP offer</a>");
	render_out_clear(&out);
}

static void test_open_pixel_is_added_once(void **state)
{
	struct content_template tpl = make_tpl("s", "", tracked_body);
	struct lead lead = make_lead();
	struct clicks clicks = { 0 };
	struct render_tracking trk = { .click_url = record_click,
				       .arg = &clicks,
				       .open_url = "https://t.example/o/abc?x=1&y=2" };
	struct render_out out;
	(void)state;
	touch_ok(&nurture_seq, &tpl, &lead, &trk, &out);
	int n = count_of(out.html, "width=\"1\" height=\"1\"");
	if (n != 1)
		fail_msg("expected exactly one 1x1 image, got %d in \"%s\"", n, out.html);
	assert_contains(
		out.html,
		"<img src=\"https://t.example/o/abc?x=1&amp;y=2\" width=\"1\" height=\"1\"");
	/* The pixel is in the HTML only, and it is not a tracked link. */
	assert_not_contains(out.text, "t.example/o/");
	if (clicks.n != 3)
		fail_msg("expected 3 tracked links, got %zu", clicks.n);
	render_out_clear(&out);
}

static void test_unsubscribe_link_ends_html_and_text(void **state)
{
	struct content_template tpl = make_tpl("s", "", "Body\n");
	struct lead lead = make_lead();
	struct clicks clicks = { 0 };
	struct render_tracking trk = { .click_url = record_click,
				       .arg = &clicks,
				       .unsubscribe_url = "https://t.example/u/abc" };
	struct render_out out;
	(void)state;
	touch_ok(&nurture_seq, &tpl, &lead, &trk, &out);
	assert_contains(out.html, "<a href=\"https://t.example/u/abc\">Unsubscribe</a>");
	assert_contains(out.text, "Unsubscribe: https://t.example/u/abc\n");
	/* After the sender's footer, and not itself click-tracked. */
	const char *footer = strstr(out.text, COMPANY), *unsub = strstr(out.text, "Unsubscribe:");
	assert_non_null(footer);
	assert_true(footer < unsub);
	if (clicks.n != 0)
		fail_msg("expected no tracked links, got %zu", clicks.n);
	render_out_clear(&out);
}

static void test_without_tracking_links_are_left_as_written(void **state)
{
	struct content_template tpl = make_tpl("s", "", tracked_body);
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	touch_ok(&nurture_seq, &tpl, &lead, NULL, &out);
	assert_contains(
		out.html,
		"<a href=\"https://example.com/guide?who=Maya\" title=\"guide\">the guide</a>");
	assert_contains(out.html,
			"<a href=\"HTTPS://example.com/pricing\" title=\"pricing\">Pricing</a>");
	assert_contains(out.text, "the guide <https://example.com/guide?who=Maya>");
	assert_not_contains(out.html, "t.example");
	assert_not_contains(out.html, "width=\"1\"");
	assert_not_contains(out.text, "Unsubscribe");
	render_out_clear(&out);

	/* The same through render_message. */
	render_ok(&tpl, &lead, &out);
	assert_contains(out.html, "title=\"guide\"");
	assert_not_contains(out.html, "t.example");
	render_out_clear(&out);
}

/* A body parsed once is rendered again for the next lead (render keeps the tree): each
 * message gets its own link targets and titles, whatever the message before it set. */
static void test_a_reused_body_carries_nothing_of_the_message_before(void **state)
{
	struct content_template tpl = make_tpl("s", "", tracked_body);
	struct lead maya = make_lead(), ben = make_lead(), vip = make_lead();
	struct clicks clicks = { 0 };
	struct render_tracking trk = { .click_url = record_click, .arg = &clicks };
	struct render_out out;
	(void)state;
	ben.first_name = "Ben";
	vip.first_name = "Vera";
	vip.tags = "[\"vip\"]";
	touch_ok(&nurture_seq, &tpl, &maya, &trk, &out);
	assert_contains(out.html, "<a href=\"https://t.example/c/0\">the guide</a>");
	render_out_clear(&out);

	/* Untracked, another lead: the links as written, with this lead's value. */
	render_ok(&tpl, &ben, &out);
	assert_contains(
		out.html,
		"<a href=\"https://example.com/guide?who=Ben\" title=\"guide\">the guide</a>");
	assert_contains(out.text, "the guide <https://example.com/guide?who=Ben>");
	assert_not_contains(out.html, "t.example");
	assert_not_contains(out.html, "Maya");
	render_out_clear(&out);

	/* Other sections shown: another tree, with its own four links. */
	clicks.n = 0;
	touch_ok(&nurture_seq, &tpl, &vip, &trk, &out);
	if (clicks.n != 4)
		fail_msg("expected 4 tracked links for a vip, got %zu", clicks.n);
	expect_click(&clicks, 0, "https://example.com/guide?who=Vera", "guide");
	expect_click(&clicks, 1, "https://example.com/vip", "vip");
	render_out_clear(&out);

	/* Tracked again for the first lead: indexes from 0, no trace of Ben or Vera. */
	clicks.n = 0;
	touch_ok(&nurture_seq, &tpl, &maya, &trk, &out);
	if (clicks.n != 3)
		fail_msg("expected 3 tracked links, got %zu", clicks.n);
	expect_click(&clicks, 0, "https://example.com/guide?who=Maya", "guide");
	assert_not_contains(out.html, "Ben");
	assert_not_contains(out.html, "Vera");
	assert_not_contains(out.html, "title=\"guide\"");
	assert_contains(out.html, "<img src=\"https://example.com/logo.png\" alt=\"logo\"");
	render_out_clear(&out);
	render_cache_clear();
}

static void test_prospect_mail_ends_with_the_opt_out_line_and_no_footer(void **state)
{
	struct content_sequence seq = { .name = "cold",
					.mode = CONTENT_PROSPECT,
					.opt_out = "Reply no." };
	struct content_template tpl = make_tpl("Quick question", "", "Hi {{first_name}},\n\nAna\n");
	struct lead lead = make_lead();
	struct render_out out;
	(void)state;
	touch_ok(&seq, &tpl, &lead, NULL, &out);
	static const char want[] = "Hi Maya,\n\nAna\n\nReply no.\n";
	if (strcmp(out.text, want) != 0)
		fail_msg("expected the text \"%s\", got \"%s\"", want, out.text);
	assert_not_contains(out.text, COMPANY);
	assert_not_contains(out.text, "\n-- \n");
	assert_not_contains(out.html, COMPANY);
	render_out_clear(&out);

	/* An unsubscribe URL does not turn a personal note into a newsletter. */
	struct render_tracking trk = { .unsubscribe_url = "https://t.example/u/abc" };
	touch_ok(&seq, &tpl, &lead, &trk, &out);
	if (strcmp(out.text, want) != 0)
		fail_msg("expected the text \"%s\", got \"%s\"", want, out.text);
	render_out_clear(&out);

	/* The same template as nurture mail gets the footer. */
	touch_ok(&nurture_seq, &tpl, &lead, NULL, &out);
	assert_contains(out.text, "\n-- \n" COMPANY "\n");
	assert_not_contains(out.text, "Reply no.");
	render_out_clear(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_fields_fill_subject_text_and_html),
		cmocka_unit_test(test_fallback_is_used_only_when_the_value_is_empty),
		cmocka_unit_test(test_empty_field_without_fallback_is_empty),
		cmocka_unit_test(test_attrs_fields_read_the_lead_attributes),
		cmocka_unit_test(test_hostile_values_are_escaped_in_html_and_verbatim_in_text),
		cmocka_unit_test(test_line_breaks_in_values_never_reach_subject_or_preheader),
		cmocka_unit_test(test_merge_field_in_a_link_target_is_percent_encoded),
		cmocka_unit_test(test_a_value_cannot_smuggle_another_field_into_a_link),
		cmocka_unit_test(test_markdown_in_a_value_is_not_interpreted),
		cmocka_unit_test(test_template_markdown_is_rendered),
		cmocka_unit_test(test_long_markdown_renders_as_cmark_does_alone),
		cmocka_unit_test(test_text_renders_lists_links_and_ends_with_the_footer),
		cmocka_unit_test(test_footer_is_html_escaped),
		cmocka_unit_test(test_preheader_is_a_hidden_div_in_the_html),
		cmocka_unit_test(test_check_accepts_known_fields),
		cmocka_unit_test(test_check_refuses_unknown_and_malformed_fields_with_their_offset),
		cmocka_unit_test(test_render_refuses_a_template_with_a_bad_field),
		cmocka_unit_test(test_if_section_shows_its_text_only_when_the_field_is_not_empty),
		cmocka_unit_test(
			test_inverted_if_section_shows_its_text_only_when_the_field_is_empty),
		cmocka_unit_test(test_tag_section_follows_the_lead_tags),
		cmocka_unit_test(test_sections_nest_two_deep),
		cmocka_unit_test(test_sections_work_in_the_subject_and_preheader),
		cmocka_unit_test(test_hidden_section_text_and_its_fields_never_reach_the_output),
		cmocka_unit_test(test_hidden_fields_do_not_count_toward_the_field_limit),
		cmocka_unit_test(test_check_accepts_well_formed_sections),
		cmocka_unit_test(test_check_refuses_bad_sections_with_their_offset),
		cmocka_unit_test(test_check_refuses_sections_nested_seventeen_deep),
		cmocka_unit_test(test_each_field_visits_fields_inside_sections_and_tested_fields),
		cmocka_unit_test(test_each_field_stops_at_the_first_non_zero_return),
		cmocka_unit_test(test_markup_in_first_name_is_escaped_even_inside_a_link),
		cmocka_unit_test(test_crlf_in_first_name_never_reaches_the_subject),
		cmocka_unit_test(test_a_one_megabyte_first_name_renders_at_a_sane_size),
		cmocka_unit_test(test_invalid_utf8_in_company_cannot_break_out_of_escaping),
		cmocka_unit_test(test_tracking_rewrites_every_web_link_in_order),
		cmocka_unit_test(test_tracking_includes_links_of_shown_sections_only),
		cmocka_unit_test(test_open_pixel_is_added_once),
		cmocka_unit_test(test_unsubscribe_link_ends_html_and_text),
		cmocka_unit_test(test_without_tracking_links_are_left_as_written),
		cmocka_unit_test(test_a_reused_body_carries_nothing_of_the_message_before),
		cmocka_unit_test(test_prospect_mail_ends_with_the_opt_out_line_and_no_footer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
