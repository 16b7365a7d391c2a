import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Layers import only the ones before them: protocol → contracts → nodes → ros/launch.
const layer = (banned, extra = []) => ({
  'no-restricted-imports': [
    'error',
    {
      patterns: [
        ...banned.map((dir) => ({
          group: [`**/${dir}/*`, `**/${dir}/**`],
          message: `this layer must not import ${dir}/`,
        })),
        ...extra,
      ],
    },
  ],
});
const pureIo = [
  {
    group: ['node:fs', 'node:fs/*', 'node:net', 'node:child_process', 'node:http', 'node:os', 'fs', 'net', 'os'],
    message: 'pure layers do no I/O',
  },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Prettier wraps code at 120 but leaves strings and comments long: this holds them too.
      'max-len': ['error', { code: 120, ignoreUrls: true }],
    },
  },
  { files: ['protocol/**/*.ts'], rules: layer(['contracts', 'nodes', 'ros', 'launch'], pureIo) },
  { files: ['contracts/**/*.ts'], rules: layer(['nodes', 'ros', 'launch'], pureIo) },
  { files: ['nodes/**/*.ts'], rules: layer(['ros', 'launch']) },
  { files: ['ros/**/*.ts'], rules: layer(['launch']) },
);
