// Allure 3 report for kms-conformance: one group per clause (the story label), so the tree lists clause ids.
import { defineConfig } from "allure";

export default defineConfig({
  name: "KMS conformance",
  output: "./reports/allure-report",
  plugins: {
    awesome: {
      options: {
        reportName: "KMS conformance",
        singleFile: true,
        groupBy: ["story"],
      },
    },
  },
});
