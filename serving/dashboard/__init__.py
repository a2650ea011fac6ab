"""The plant-manager / QA dashboard: static HTML, JS and CSS (Chart.js vendored), served by serving.routes.dashboard."""
