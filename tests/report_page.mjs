// Render an Allure report in headless Chromium (playwright-core, Debian's chromium) and print what a reader sees:
// node report_page.mjs REPORT.html [TEXT_TO_CLICK ...] -> the page's text after each click, as JSON lines,
// then the requests that left the file.
import { chromium } from "playwright-core";

const [report, ...clicks] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const outside = [];  // requests that leave the file: a report must open offline and call nobody
  page.on("request", (request) => {
    if (!/^(file|data|blob):/.test(request.url())) outside.push(request.url());
  });
  await page.goto(`file://${report}`);
  await page.waitForSelector("text=Total", { timeout: 30000 });
  console.log(JSON.stringify({ step: "home", text: await page.innerText("body") }));
  for (const text of clicks) {
    await page.getByText(text, { exact: true }).first().click();
    await page.waitForTimeout(800);
    console.log(JSON.stringify({ step: text, text: await page.innerText("body") }));
  }
  console.log(JSON.stringify({ step: "outside requests", text: outside.join("\n") }));
} finally {
  await browser.close();
}
