// GraphiQL for MARS's /api/v1/graphql: the page's own script (no inline script, for CSP).
(function () {
  var root = document.getElementById("graphiql");
  var endpoint = new URL(root.dataset.endpoint, document.baseURI).href;
  var fetcher = GraphiQL.createFetcher({ url: endpoint });
  ReactDOM.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      headerEditorEnabled: true,
      defaultEditorToolsVisibility: true,
      defaultQuery: "# Send a token in Headers: {\"Authorization\": \"Bearer <token>\"}\n" +
        "{\n  projects(first: 5) {\n    nodes { id name members { userId role } }\n" +
        "    pageInfo { hasNextPage endCursor }\n  }\n}\n",
    }),
    root
  );
})();
