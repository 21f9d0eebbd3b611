/* test_render.c - templates and leads into subject, preheader, HTML and text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "testutil.h"

#include "dripd/content.h"
#include "dripd/error.h"
#include "dripd/render.h"
#include "dripd/store.h"

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
		cmocka_unit_test(test_text_renders_lists_links_and_ends_with_the_footer),
		cmocka_unit_test(test_footer_is_html_escaped),
		cmocka_unit_test(test_preheader_is_a_hidden_div_in_the_html),
		cmocka_unit_test(test_check_accepts_known_fields),
		cmocka_unit_test(test_check_refuses_unknown_and_malformed_fields_with_their_offset),
		cmocka_unit_test(test_render_refuses_a_template_with_a_bad_field),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
