import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';
import { cpSync } from 'node:fs';

// pdf.js fetches the data of the 14 standard PDF fonts when a document
// uses one without embedding it; they are served from /assets/pdfjs/.
const pdfjsFonts = {
  name: 'pdfjs-standard-fonts',
  apply: 'build',
  writeBundle() {
    cpSync('node_modules/pdfjs-dist/standard_fonts', 'dist/assets/pdfjs/standard_fonts', { recursive: true });
  },
};

// The build goes to dist/ (committed, embedded by web/ui/ui.go). Every file
// it makes lives under /assets/ so the Go server serves one folder; base is
// absolute because the same index.html answers /s/<id>.
export default defineConfig({
  base: '/',
  plugins: [preact({ devToolsEnabled: false, prefreshEnabled: false }), pdfjsFonts],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
    modulePreload: { polyfill: false },
  },
  // npm run dev: the API and share pages from the dev server (docs/web.md).
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
});
