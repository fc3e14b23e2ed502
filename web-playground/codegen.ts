// graphql-codegen: the typed client of the live editor, from the committed SDL.
// `npm run codegen` rewrites src/generated/graphql.ts; CI fails when it is stale.
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: '../schema/schema.graphql',
  documents: ['src/graphql/*.graphql'],
  generates: {
    'src/generated/graphql.ts': {
      plugins: ['typescript-operations', 'typed-document-node'],
      config: {
        // Custom scalars travel as strings (base64, RFC 3339).
        scalars: { Base64: 'string', DateTime: 'string', VersionVector: 'string' },
        strictScalars: true,
        enumsAsTypes: true,
        useTypeImports: true,
        avoidOptionals: { field: true, inputValue: false, object: false },
      },
    },
  },
};

export default config;
