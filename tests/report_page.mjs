// Render an Allure report in headless Chromium (playwright-core, Debian's chromium) and print what a reader sees:
// node report_page.mjs REPORT.html [TEXT_TO_CLICK ...] -> the page's text after each click, as JSON lines,
// then how far the page had scrolled by itself, the texts it cuts off, and the requests that left the file.
import { chromium } from "playwright-core";

const [report, ...clicks] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const outside = [];  // requests that leave the file: a report must open offline and call nobody
  page.on("request", (request) => {
    if (!/^(file|data|blob):/.test(request.url())) outside.push(request.url());
  });
  await page.goto(`file://${report}`);
  await page.waitForSelector("text=Total", { timeout: 30000 });
  await page.waitForTimeout(1000);  // the app moves its tree to its cursor once it has drawn it
  const scrolled = await page.evaluate(() => Math.max(window.scrollY,
    ...Array.from(document.querySelectorAll("*"), (e) => e.scrollTop)));
  // what the page shows cut short (an ellipsis or clipped text), as the reader sees it on opening
  const cut = await page.evaluate(() => Array.from(document.querySelectorAll("*")).filter((e) =>
    e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).textOverflow === "ellipsis"
    && e.checkVisibility({ opacityProperty: true, visibilityProperty: true })).map((e) => e.innerText));
  console.log(JSON.stringify({ step: "home", text: await page.innerText("body") }));
  console.log(JSON.stringify({ step: "scrolled", text: String(scrolled) }));
  console.log(JSON.stringify({ step: "cut off", text: cut.join("\n") }));
  for (const text of clicks) {
    await page.getByText(text, { exact: true }).first().click();
    await page.waitForTimeout(800);
    console.log(JSON.stringify({ step: text, text: await page.innerText("body") }));
  }
  console.log(JSON.stringify({ step: "outside requests", text: outside.join("\n") }));
} finally {
  await browser.close();
}
