"""The node's read-only web view: a static page (`static/`) and the JSON endpoints it reads
(`server.WebServer`, documents built by `views.WebViews` from the node's API data). Off unless
`[web] enabled`; `clearingd devnet` turns it on and prints its address."""
