// Entry point: /s/<id> is the public share page, everything else the app.
import { render } from 'preact';
import './style.css';
import { App } from './app.jsx';
import { SharePage } from './sharepage.jsx';
import { applyTheme, getTheme } from './ui.jsx';

applyTheme(getTheme());
const m = location.pathname.match(/^\/s\/([^/]+)\/?$/);
render(m ? <SharePage id={decodeURIComponent(m[1])} /> : <App />, document.getElementById('app'));
